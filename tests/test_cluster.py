"""A real two-node Ray cluster and a real MLflow tracking server on this machine.

Starts ``ray start --head`` (dashboard on, for the Jobs API) and a second ``ray start
--address=...`` node, one CPU each, plus ``mlflow server`` with a sqlite store on 127.0.0.1;
submits the shard build and a tiny two-rank training through ``JobSubmissionClient`` and
checks the shards, the checkpoint and the runs the server received.

Teardown never runs ``ray stop``: it stops *every* Ray instance on the machine, including
other tests' embedded Ray. Both nodes run ``ray start --block`` as children of this process
(each in its own session, and told by ``prctl`` to get SIGTERM if pytest dies): SIGTERM
makes them shut their own processes down, and Ray's kernel fate-sharing takes raylet workers
along. A last sweep kills only processes that carry
this cluster's private token in their environment (every Ray process inherits it). All
ports are picked free, so this cluster never collides with another one on the machine.

Ray 2.60 turns token authentication on by default. The cluster gets its own random token
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN`` in its environment, inherited by every job
driver); this test sends it as a bearer header and never reads or writes ``~/.ray/auth_token``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN_VAR = "TEXTBOOST_TEST_CLUSTER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None, timeout: float = 5.0) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.read()


def wait_until(what: str, check, procs: list[subprocess.Popen], logs: list[Path], limit: float):
    """Poll ``check()`` until truthy; fail early (with the logs) if a child process died."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError):
            pass
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                pytest.fail(f"{what}: {proc.args[:3]} exited {proc.returncode}\n{log.read_text()}")
        time.sleep(0.5)
    tails = "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"{what}: not ready after {limit:.0f} s\n{tails}")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when pytest dies, even by SIGKILL (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: signals never reach pytest
        preexec_fn=_die_with_parent,
    )


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM the process groups we created (all at once), then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _kill_tagged(token: str) -> list[int]:
    """Kill the processes whose environment carries our token (and only those; Linux /proc)."""
    tag = f"{TOKEN_VAR}={token}".encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if tag in environ:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ValueError):
            continue  # gone, or not ours to read
    return killed


@dataclass
class Services:
    dashboard: str  # http://127.0.0.1:<port>: Ray dashboard / Jobs API
    mlflow: str  # http://127.0.0.1:<port>: MLflow tracking server
    artifacts: Path  # the server's --artifacts-destination
    root: Path  # scratch folder shared by both "nodes" (same machine)
    headers: dict  # bearer token of this cluster (Ray token authentication)


def _ray_node_args(temp_dir: Path) -> list[str]:
    return [
        "--num-cpus=1",
        "--num-gpus=0",
        "--block",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=150000000",
        "--min-worker-port=0",  # random worker ports: no clash with other Ray instances
        "--max-worker-port=0",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def state_api(dashboard: str, headers: dict, what: str, **filters: str) -> list[dict]:
    """Ray's state API (nodes, tasks, actors) over the dashboard's HTTP endpoint."""
    query = [("limit", "1000"), ("detail", "1")]
    for key, value in filters.items():
        query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
    url = f"{dashboard}/api/v0/{what}?{urllib.parse.urlencode(query)}"
    return json.loads(_get(url, headers))["data"]["result"]["result"]


def _alive_nodes(dashboard: str, headers: dict) -> int:
    return len(state_api(dashboard, headers, "nodes", state="ALIVE"))


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("cluster")
    # Ray's unix sockets live under --temp-dir: keep it short (socket paths <= 107 bytes).
    token = uuid.uuid4().hex[:10]
    temp_dir = Path("/tmp") / f"tbray-{token}"
    auth_token = secrets.token_hex(32)
    headers = {"Authorization": f"Bearer {auth_token}"}
    env = {
        **os.environ,
        TOKEN_VAR: token,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": auth_token,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "TQDM_DISABLE": "1",
    }
    for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(var, None)
    mlflow_port, gcs_port, dash_port = free_port(), free_port(), free_port()
    artifacts = root / "mlflow-artifacts"
    procs: list[subprocess.Popen] = []
    logs = [root / "mlflow.log", root / "ray-head.log", root / "ray-worker.log"]
    try:
        procs.append(_spawn(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
             "--port", str(mlflow_port), "--workers", "1"],
            logs[0], env,
        ))  # fmt: skip
        procs.append(_spawn(
            [str(BIN / "ray"), "start", "--head", f"--port={gcs_port}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dash_port}", f"--ray-client-server-port={free_port()}",
             *_ray_node_args(temp_dir)],
            logs[1], env,
        ))  # fmt: skip
        dashboard = f"http://127.0.0.1:{dash_port}"
        check = lambda: _get(f"{dashboard}/api/version", headers)  # noqa: E731
        wait_until("ray head", check, procs, logs, 240)
        procs.append(_spawn(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs_port}",
             *_ray_node_args(temp_dir)],
            logs[2], env,
        ))  # fmt: skip
        check = lambda: _alive_nodes(dashboard, headers) == 2  # noqa: E731
        wait_until("two nodes", check, procs, logs, 240)
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_until("mlflow server", lambda: _get(f"{mlflow_url}/health"), procs, logs, 240)
        yield Services(dashboard, mlflow_url, artifacts, root, headers)
    finally:
        _stop(procs)
        _kill_tagged(token)
        shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's session files (logs stay in root)


def run_job(services: Services, entrypoint: str, limit: float = 240) -> str:
    """Submit through the Ray Jobs API, wait, and return the logs (fail with them)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(services.dashboard, headers=services.headers)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"env_vars": {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}},
    )
    deadline = time.monotonic() + limit
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if not status.is_terminal():
        client.stop_job(job_id)
    assert status == JobStatus.SUCCEEDED, f"{entrypoint}: {status}\n{logs[-6000:]}"
    return logs


def test_jobs_see_both_nodes(services: Services) -> None:
    script = (
        "import ray, socket; ray.init(); "
        "nodes = [n for n in ray.nodes() if n['Alive']]; "
        "print('NODES', len(nodes), 'CPUS', int(ray.cluster_resources()['CPU']))"
    )
    logs = run_job(services, f'{sys.executable} -c "{script}"', limit=120)
    assert "NODES 2 CPUS 2" in logs


# ---------------------------------------------------------------- shard build + training jobs


def _list(services: Services, what: str, **filters: str) -> list[dict]:
    return state_api(services.dashboard, services.headers, what, **filters)


@pytest.fixture(scope="module")
def job_config(services: Services, tiny_yaml) -> Path:
    workdir = services.root / "work"
    path = services.root / "cluster.yaml"
    path.write_text(
        tiny_yaml(
            workdir, images=8, shards="samples_per_shard: 2, max_in_flight: 4", num_workers=2,
            tail=f"""\
  log_every: 1  # a train.loss row per step (asserted below)
  run_name: cluster-stage1
mlflow: {{tracking_uri: "{services.mlflow}", experiment: cluster}}
""",
        )
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def shards_job(services: Services, job_config: Path) -> dict:
    logs = run_job(services, f"{sys.executable} -m jobs.shards build {job_config} --split train")
    return {"logs": logs, "out": services.root / "work" / "shards"}


def test_shard_build_job_runs_ray_tasks_in_the_cluster(services: Services, shards_job: dict):
    from pipeline.shard_check import verify_shards
    from pipeline.shards import read_manifest

    manifest = read_manifest(str(shards_job["out"]))
    entry = manifest["splits"]["train"]
    assert entry["count"] == 8 and len(entry["shards"]) == 4
    report = verify_shards(str(shards_job["out"]))
    assert report["ok"], report["errors"]
    # One Ray task per shard, executed by this cluster's workers (not a local loop). Tiny
    # tasks may all land on one node (Ray reuses a leased worker); placement across both
    # nodes is checked with the training job, whose two ranks need one CPU each.
    tasks = _list(services, "tasks", func_or_class_name="run_shard")
    nodes = {n["node_id"] for n in _list(services, "nodes", state="ALIVE")}
    finished = [t for t in tasks if t["state"] == "FINISHED"]
    assert len(finished) == 4
    assert {t["node_id"] for t in finished} <= nodes


def test_training_job_runs_ddp_on_both_nodes_and_logs_to_the_server(
    services: Services, job_config: Path, shards_job: dict
) -> None:
    from mlflow import MlflowClient

    from pipeline.shards import manifest_sha256
    from textboost.model.checkpoint import load_checkpoint

    logs = run_job(services, f"{sys.executable} -m jobs.train {job_config} stage=1 --json")
    result = json.loads(next(line for line in reversed(logs.splitlines()) if line.startswith("{")))
    # Two DDP ranks, one per node (each node has a single CPU).
    workers = _list(services, "actors", class_name="RayTrainWorker")
    assert len({a["node_id"] for a in workers}) == 2
    # The checkpoint names the shards it was trained on.
    _, meta = load_checkpoint(result["checkpoint"])
    assert meta["stage"] == 1
    assert meta["manifest_sha256"] == manifest_sha256(str(shards_job["out"]))
    # The MLflow server received the run, its per-step metrics and the checkpoint artifact.
    client = MlflowClient(services.mlflow)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["textboost.manifest_sha256"] == meta["manifest_sha256"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train.loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    assert [f.path for f in client.list_artifacts(run.info.run_id, "checkpoint")] == [
        "checkpoint/model.pt"
    ]
    stored = list(services.artifacts.rglob("model.pt"))  # the server's artifact store
    assert len(stored) == 1 and stored[0].stat().st_size > 0
