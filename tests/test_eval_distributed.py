"""Distributed evaluation (eval.workers) on real Ray: the same outputs with 0, 1 and 2 workers,
resume from rows.jsonl without recomputing finished images, and evaluation of the val shards."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from tiny_eval_set import eval_config, tiny_set_and_model

from textboost.config import load_config

torch.set_num_threads(1)

OUTPUTS = ("per_image.csv", "summary.csv", "rejected.jsonl", "results/textboost.json",
           "results/backbone.json", "rd_curves.png")  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield tiny_set_and_model(tmp_path_factory.mktemp("deval"), images=2, seed=7, max_side=192)
    ray.shutdown()


def _cfg(data: dict, out, *extra: str):
    return eval_config(data, out, "backbone", *extra)


def _lines(out) -> list[dict]:
    return [json.loads(t) for t in (out / "rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(data) -> dict:
    from pipeline.evaluation import run_evaluation

    return {
        n: run_evaluation(_cfg(data, data["root"] / f"out{n}", f"eval.workers={n}"))
        for n in (0, 1, 2)
    }


def test_ray_workers_give_the_same_outputs(data, runs):
    root = data["root"]
    for n in (1, 2):
        for rel in OUTPUTS:
            assert (root / f"out{n}" / rel).read_bytes() == (root / "out0" / rel).read_bytes(), rel
        (crop,) = os.listdir(root / "out0" / "crops")
        assert (root / f"out{n}" / "crops" / crop).read_bytes() == (
            root / "out0" / "crops" / crop
        ).read_bytes()
        assert runs[n]["means"] == runs[0]["means"]
        assert runs[n]["images"] == 2 and runs[n]["images_computed"] == 2
        # the rows themselves (timings and process aside), in the same order
        strip = [
            {k: v for k, v in x.items() if k not in ("pid", "timing")}
            for x in _lines(root / f"out{n}")
        ]
        assert strip == [
            {k: v for k, v in x.items() if k not in ("pid", "timing")}
            for x in _lines(root / "out0")
        ]
    # 0 workers: this process; 1 and 2: Ray worker processes
    assert {x["pid"] for x in _lines(root / "out0")} == {os.getpid()}
    for n in (1, 2):
        assert os.getpid() not in {x["pid"] for x in _lines(root / f"out{n}")}


def test_resume_computes_only_the_missing_images(data, runs):
    from pipeline.evaluation import run_evaluation

    out = data["root"] / "resume"
    shutil.copytree(data["root"] / "out2", out)
    before = _lines(out)
    assert [x["model"] for x in before] == ["-", "m0", "-", "m0"]  # image 0, then image 1
    # a run killed while writing image 1's model line: that line is torn, the rest is whole
    text = "".join(json.dumps(x, sort_keys=True) + "\n" for x in before[:3])
    (out / "rows.jsonl").write_text(text + json.dumps(before[3], sort_keys=True)[:50])
    for rel in OUTPUTS:
        (out / rel).unlink()
    summary = run_evaluation(_cfg(data, out, "eval.workers=2"))
    after = _lines(out)
    assert summary["images_computed"] == 1 and summary["images_reused"] == 1
    assert after[:3] == before[:3]  # reused as they were (same timings, same worker pid)
    assert after[3]["id"] == before[3]["id"] and after[3]["timing"] != before[3]["timing"]
    assert after[3]["rows"] == before[3]["rows"]
    for rel in OUTPUTS:  # the summary, from the rows, as if the first run had finished
        assert (out / rel).read_bytes() == (data["root"] / "out0" / rel).read_bytes(), rel
    # a changed setting never reuses a stale line
    changed = run_evaluation(_cfg(data, out, "eval.workers=2", "eval.t_test=50"))
    assert changed["images_computed"] == 2 and changed["images_reused"] == 0


def test_evaluation_reads_the_val_shards(data, runs):
    """eval.dataset.kind=shards: the samples of the built val split, side info from their
    ocr.json: the same containers as evaluating the raw set with the same T_test."""
    import csv

    from pipeline.evaluation import run_evaluation
    from pipeline.shards import build_shards

    shards = data["root"] / "shards"
    build = load_config(
        None,
        [
            f"workdir={data['root']}", "data.val.kind=textocr", f"data.val.images={data['images']}",
            f"data.val.annotations={data['ann']}", "shards.executor=local",
            f"shards.out={shards}", "shards.progress=false",
        ],
    )  # fmt: skip
    manifest = build_shards(build, "val")
    assert manifest["splits"]["val"]["count"] == 2
    out = data["root"] / "from_shards"
    summary = run_evaluation(
        _cfg(data, out, "eval.dataset.kind=shards", f"eval.dataset.images={shards}")
    )
    assert summary["images"] == 2 and summary["rejected"] == 0

    def bpp(folder) -> dict:
        with open(folder / "per_image.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return {(r["key"], r["method"]): r["bpp"] for r in rows if r["method"] != "original"}

    assert bpp(out) == bpp(data["root"] / "out0")  # same keys, same side info, same bits
