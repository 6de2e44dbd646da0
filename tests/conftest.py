"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def _trained_like(model, seed: int = 0):
    """``model`` with a non-zero fusion projection (a fresh block is the identity), as after
    stage 2: the codec tests then see the block change the decoded image."""
    gen = torch.Generator().manual_seed(seed)
    w = model.fusion_block.project.weight
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="session")
def trained_like() -> Callable:
    return _trained_like


def _tiny_yaml(workdir: Path, *, images: int, shards: str, num_workers: int, tail: str) -> str:
    """The tiny synthetic pipeline config (hyperprior N = M = 8, 4 steps of 64 px crops) that
    the pipeline and cluster tests run; ``shards``: the shards section's extra keys, ``tail``:
    the rest of the YAML."""
    return f"""\
workdir: {workdir}
data:
  synth: {{images: {images}, min_side: 64, max_side: 128, words_min: 2, words_max: 4}}
shards: {{{shards}, progress: false}}
model: {{backbone: hyperprior, N: 8, M: 8}}
train:
  epochs: 1
  steps_per_epoch: 4
  batch_size: 2
  crop_size: 64
  num_workers: {num_workers}
  loader_workers: 0
  checkpoint_every: 2
{tail}"""


@pytest.fixture(scope="session")
def tiny_yaml() -> Callable[..., str]:
    return _tiny_yaml
