"""Shard builder with real Ray: reproducible bytes, resume, retries, rejects, verify, storage.

Fault injection (``pipeline.faults``): ``TEXTBOOST_FAULT_SHARD_ONCE=<marker path>`` makes the
first shard task that commits a tar die (``os._exit``) between the tar's temporary write and
its rename, once; the driver reads it when it plans the tasks.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from jobs import shards as shards_job
from pipeline import faults
from pipeline.shard_check import rebuild_check, verify_shards
from pipeline.shards import build_shards, read_manifest, shard_urls
from textboost.config import load_config

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 7  # 4 train shards of 2 (the last one short)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-compatible server (moto) on 127.0.0.1, configured before Ray starts."""
    from moto.server import ThreadedMotoServer

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster(s3_endpoint):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Tiny TextOCR-format set with one corrupt JPEG and one malformed annotation."""
    from textboost.data.synth_sets import generate

    root = tmp_path_factory.mktemp("data")
    generate(root / "clean", N_IMAGES, seed=11, max_side=160, min_side=96, words=(2, 6))
    shutil.copytree(root / "clean", root / "dirty")
    ann = json.loads((root / "dirty" / "textocr.json").read_text())
    ids = sorted(ann["imgs"])
    corrupt = root / "dirty" / "images" / f"{ids[1]}.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    bad_ann = next(a for a in ann["anns"].values() if a["image_id"] == ids[4])
    bad_ann["points"] = [1, 2, "three"]
    (root / "dirty" / "textocr.json").write_text(json.dumps(ann))
    return root


def _overrides(data: Path, out: str, which: str = "clean", **extra) -> list[str]:
    base = {
        "workdir": str(data.parent / "work"),
        "data.train.kind": "textocr",
        "data.train.images": str(data / which / "images"),
        "data.train.annotations": str(data / which / "textocr.json"),
        "data.val.kind": "synthetic",
        "data.val.limit": 3,
        "data.synth.max_side": 128,
        "data.synth.min_side": 96,
        "data.synth.words_max": 4,
        "shards.out": out,
        "shards.samples_per_shard": 2,
        "shards.max_in_flight": 2,
        "shards.progress": False,
        "ray.num_cpus": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _build(data: Path, out: str, splits=("train",), **extra) -> dict:
    cfg = load_config(None, _overrides(data, out, **extra))
    for split in splits:
        manifest = build_shards(cfg, split)
    return manifest


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def reference(ray_cluster, data, tmp_path_factory) -> Path:
    """Train + val built with 2 tasks in flight: the bytes every other build must match."""
    out = tmp_path_factory.mktemp("reference")
    _build(data, str(out), splits=("train", "val"))
    return out


def test_bytes_identical_across_reruns_worker_counts_and_executors(reference, data, tmp_path):
    manifest = read_manifest(str(reference))
    assert [s["name"] for s in manifest["splits"]["train"]["shards"]] == [
        f"train-{i:06d}.tar" for i in range(4)
    ]
    assert manifest["splits"]["train"]["count"] == N_IMAGES
    assert manifest["splits"]["val"]["count"] == 3
    one = tmp_path / "one_worker"
    _build(data, str(one), splits=("train", "val"), **{"shards.max_in_flight": 1})
    assert _files(one) == _files(reference)
    plain = tmp_path / "plain_loop"
    _build(data, str(plain), splits=("train", "val"), **{"shards.executor": "local"})
    assert _files(plain) == _files(reference)
    # a rerun skips every committed shard: nothing is rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in one.glob("*-*.tar")}
    _build(data, str(one), splits=("train", "val"))
    assert {p.name: p.stat().st_mtime_ns for p in one.glob("*-*.tar")} == mtimes
    assert _files(one) == _files(reference)


def test_webdataset_reads_every_sample_with_all_fields(reference):
    from textboost.text.guidance import render_guidance
    from textboost.text.side_info import decode_side_info

    urls = shard_urls(str(reference), "train")
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == N_IMAGES
    assert len({s["__key__"] for s in samples}) == N_IMAGES
    for s in samples:
        assert {"jpg", "ocr.json", "side.bin", "guide.png", "meta.json"} <= set(s)
        meta, ocr = json.loads(s["meta.json"]), json.loads(s["ocr.json"])
        guide = np.asarray(Image.open(io.BytesIO(s["guide.png"])))
        assert guide.shape == (meta["height"], meta["width"]) == (ocr["height"], ocr["width"])
        words = decode_side_info(s["side.bin"])
        assert len(words) == meta["words"]["kept"] == len(ocr["words"])
        np.testing.assert_array_equal(guide, render_guidance(words, meta["height"], meta["width"]))


def test_rejects_are_recorded_and_the_build_goes_on(ray_cluster, data, tmp_path):
    out = tmp_path / "dirty"
    manifest = _build(data, str(out), which="dirty")
    entry = manifest["splits"]["train"]
    assert entry["count"] == N_IMAGES - 2 and entry["rejected"] == 2
    lines = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    reasons = " | ".join(r["reason"] for r in lines)
    assert len(lines) == 2 and "ImageError" in reasons and "AnnotationError" in reasons
    assert all(r["split"] == "train" and r["key"].startswith("textocr_") for r in lines)
    again = tmp_path / "dirty_again"
    _build(data, str(again), which="dirty", **{"shards.max_in_flight": 1})
    assert _files(again) == _files(out)
    assert verify_shards(str(out))["ok"]


def test_verify_and_rebuild_check_detect_tampering(reference, tmp_path, capsys):
    assert shards_job.main(["verify", str(reference)]) == 0
    assert shards_job.main(["rebuild", str(reference), "--check", "--shard", "1"]) == 0
    report = rebuild_check(str(reference), splits=["val"])
    assert report["ok"] and report["compared"] == 2
    bad = tmp_path / "tampered"
    shutil.copytree(reference, bad)
    tar = bad / "train-000002.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF
    tar.write_bytes(bytes(data))
    (bad / "val-000001.json").unlink()
    (bad / "train-000003.tar.tmp-dead").write_bytes(b"partial")
    report = verify_shards(str(bad))
    text = "\n".join(report["errors"])
    assert not report["ok"]
    assert "train-000002.tar: sha256" in text and "val-000001.json is missing" in text
    assert "train-000003.tar.tmp-dead" in text
    assert shards_job.main(["verify", str(bad)]) == 1
    assert shards_job.main(["rebuild", str(bad), "--check", "--split", "train"]) == 1
    assert "train-000002.tar: rebuilt bytes differ" in capsys.readouterr().err


def test_driver_killed_midway_then_rerun_gives_the_same_bytes(
    ray_cluster, data, reference, tmp_path
):
    out = tmp_path / "interrupted"
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("{}\n")
    args = _overrides(data, str(out), **{"shards.max_in_flight": 1, "shards.samples_per_shard": 1})
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "jobs.shards", "build", str(cfg_file), *args, "--split", "train"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while (
        not list(out.glob("train-*.json")) and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    stderr = proc.communicate()[1].decode()
    committed = len(list(out.glob("train-*.json")))
    assert 1 <= committed < N_IMAGES, stderr[-2000:]
    assert not (out / "manifest.json").exists()
    manifest = _build(data, str(out), **{"shards.samples_per_shard": 1})
    assert len(manifest["splits"]["train"]["shards"]) == N_IMAGES
    assert verify_shards(str(out))["ok"]
    # same samples as the reference (2 per shard there): compare the sample bytes
    assert _samples(out) == _samples(reference)
    fresh = tmp_path / "fresh"
    _build(data, str(fresh), **{"shards.samples_per_shard": 1})
    assert _files(fresh) == _files(out)


def _samples(out: Path) -> dict[str, dict]:
    urls = shard_urls(str(out), "train")
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")} for s in dataset}


def test_worker_killed_during_a_task_is_retried(ray_cluster, data, reference, tmp_path,
                                                monkeypatch):  # fmt: skip
    marker = tmp_path / "crashed-once"
    out = tmp_path / "crashy"
    monkeypatch.setenv(faults.SHARD_ONCE, str(marker))  # read by the driver, not the workers
    _build(data, str(out), splits=("train", "val"))
    assert marker.exists()  # a worker really died (os._exit between temp write and rename)
    assert _files(out) == _files(reference)
    assert verify_shards(str(out))["ok"]


def test_config_change_rebuilds_and_removes_stale_shards(ray_cluster, data, reference, tmp_path):
    out = tmp_path / "changed"
    shutil.copytree(reference, out)
    manifest = _build(data, str(out), **{"shards.samples_per_shard": 3})
    names = [s["name"] for s in manifest["splits"]["train"]["shards"]]
    assert names == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert not (out / "train-000003.tar").exists() and not (out / "train-000003.json").exists()
    assert manifest["splits"]["val"] == read_manifest(str(reference))["splits"]["val"]
    assert verify_shards(str(out))["ok"]


def test_cli_build_to_memory_output(ray_cluster, data, reference, tmp_path):
    import fsspec

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("shards:\n  samples_per_shard: 2\n")
    url = "memory://textboost-test/shards"
    assert shards_job.main(["build", str(cfg_file), *_overrides(data, url)]) == 0
    fs = fsspec.filesystem("memory")
    for shard in (
        read_manifest(url)["splits"]["train"]["shards"]
        + read_manifest(url)["splits"]["val"]["shards"]
    ):
        assert (
            fs.cat(f"/textboost-test/shards/{shard['name']}")
            == (reference / shard["name"]).read_bytes()
        )
    assert verify_shards(url)["ok"]
    assert shard_urls(url, "val")[0] == f"{url}/val-000000.tar"


@pytest.mark.slow
def test_s3_output(ray_cluster, s3_endpoint, data, reference):
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.mkdir("textboost-shards")
    url = "s3://textboost-shards/run1"
    manifest = _build(data, url)
    assert manifest["splits"]["train"]["count"] == N_IMAGES
    for shard in manifest["splits"]["train"]["shards"]:
        assert (
            fs.cat(f"textboost-shards/run1/{shard['name']}")
            == (reference / shard["name"]).read_bytes()
        )
    assert verify_shards(url)["ok"]
    assert not [p for p in fs.find("textboost-shards/run1") if ".tmp-" in p]


def test_clear_errors_for_missing_manifests_and_unreachable_inputs(data, tmp_path):
    from textboost.errors import ConfigError, ShardError

    with pytest.raises(ShardError, match="textboost shards build"):
        read_manifest(str(tmp_path))
    with pytest.raises(ShardError, match="no 'val' split"):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "manifest.json").write_text('{"format":"textboost-shards/1","splits":{}}')
        shard_urls(str(tmp_path / "m"), "val")
    cfg = load_config(None, _overrides(data, str(tmp_path / "o"), **{"data.train.kind": "folder"}))
    cfg.data.train.images = "memory://nowhere-for-ray/imgs"
    import fsspec

    fsspec.filesystem("memory").pipe("/nowhere-for-ray/imgs/a.jpg", b"\xff\xd8\xff")
    with pytest.raises(ConfigError, match="memory:// inputs"):
        build_shards(cfg, "train")


FAULTS_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "steady":
    from pipeline.heap import steady_heap
    assert steady_heap()
def churn():  # buffers of varying size, a few alive at once, as a shard task allocates them
    for i in range(50):
        bufs = [np.ones((i % 7 + 1) << 20, np.uint8) for _ in range(3)]
        del bufs
churn()  # warm up: the heap grows to its working size once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")),
    reason="mallopt thresholds are glibc's",
)
def test_steady_heap_stops_page_faults_on_per_sample_buffers():
    """With fixed glibc thresholds the task's multi-MiB buffers are reused, not re-mmapped."""

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FAULTS_PROBE, mode], cwd=REPO, check=True,
                             capture_output=True, text=True)  # fmt: skip
        return int(run.stdout.split()[-1])

    default, steady = faults("default"), faults("steady")
    pages_allocated = 50 * 3 * 4 * 256  # 50 rounds of 3 buffers of 4 MiB on average
    assert steady < pages_allocated // 100, f"{steady} faults (glibc defaults: {default})"
