"""A tiny synthetic TextOCR-format set and an untrained tiny hyperprior checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_set_and_model(root: Path, images: int, seed: int, max_side: int) -> dict:
    """``root/set`` (TextOCR layout, 4-8 words per image) and ``root/model.pt`` (N=16, M=24)."""
    from textboost.config import ModelConfig
    from textboost.data.synth_sets import generate
    from textboost.model import build_model
    from textboost.model.checkpoint import save_checkpoint

    generate(root / "set", images, seed, fmt="textocr", max_side=max_side, min_side=192,
             words=(4, 8))  # fmt: skip
    torch.manual_seed(seed)
    mc = ModelConfig(backbone="hyperprior", N=16, M=24)
    save_checkpoint(root / "model.pt", build_model(mc), mc)
    return {"root": root, "images": root / "set" / "images", "ann": root / "set" / "textocr.json"}


def eval_config(data: dict, out, baselines: str, *extra: str):
    """An evaluation config over ``tiny_set_and_model``'s set and model (no MLflow)."""
    from textboost.config import load_config

    return load_config(
        None,
        [
            f"workdir={data['root']}",
            f"eval.models=[{data['root'] / 'model.pt'}]",
            "eval.dataset.kind=textocr",
            f"eval.dataset.images={data['images']}",
            f"eval.dataset.annotations={data['ann']}",
            f"eval.baselines=[{baselines}]",
            "eval.crops=1",
            "eval.track=false",
            "eval.register=false",
            f"eval.out={out}",
            *extra,
        ],
    )
