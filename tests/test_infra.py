"""infra/: the KubeRay, MLflow and image definitions are consistent with the repository.

Parses every manifest; each RayJob entrypoint must name a real job module and a config that
loads strictly, with arguments the job's own parser accepts; images, Ray versions and
resource requests must agree across files.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from textboost.config import load_config

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MANIFESTS = sorted(INFRA.rglob("*.yaml"))
VERSION = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
# placeholders filled by envsubst at apply time (infra/README.md): registry org and git commit
IMAGE = "ghcr.io/${TEXTBOOST_ORG}/textboost:${TEXTBOOST_GIT_SHA}"
DOCKERFILE = (INFRA / "Dockerfile").read_text()
NAMESPACE = "textboost"


def _docs() -> list[tuple[Path, dict]]:
    out = []
    for path in MANIFESTS:
        with path.open() as f:
            out += [(path, d) for d in yaml.safe_load_all(f) if d is not None]
    return out


DOCS = _docs()


def _of_kind(kind: str) -> list[dict]:
    return [d for _, d in DOCS if d["kind"] == kind]


def _containers(doc: dict) -> list[dict]:
    """Every container spec in a manifest, wherever its pod templates sit."""
    found: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def _quantity(value: str | int) -> float:
    """Kubernetes quantity -> float (cpu cores or bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"bad quantity {value!r}"
    return float(match[1]) * units.get(match[2], 1)


def _commands(entrypoint: str) -> list[list[str]]:
    """Split ``a && b ; c`` into argv lists."""
    out, current = [], []
    for token in shlex.split(entrypoint):
        if token in ("&&", ";"):
            out.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in out + [current] if c]


def _job_commands() -> list[tuple[str, list[str]]]:
    return [
        (job["metadata"]["name"], argv)
        for job in _of_kind("RayJob")
        for argv in _commands(job["spec"]["entrypoint"])
    ]


JOB_COMMANDS = _job_commands()


def _config_of(argv: list[str]) -> Path:
    (config,) = [a for a in argv if a.endswith(".yaml")]
    return ROOT / config


def test_manifests_parse_and_name_their_namespace() -> None:
    assert MANIFESTS, "infra/ holds no manifests"
    for path, doc in DOCS:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, (path, doc["metadata"])


def test_every_stage_has_a_rayjob() -> None:
    stages = {job["metadata"]["labels"]["textboost.io/stage"] for job in _of_kind("RayJob")}
    assert stages == {"preprocess", "train-stage1", "train-stage2", "evaluate"}


@pytest.mark.parametrize(("job", "argv"), JOB_COMMANDS, ids=[j for j, _ in JOB_COMMANDS])
def test_entrypoint_names_a_real_module_and_config(job: str, argv: list[str]) -> None:
    assert argv[:2] == ["python", "-m"], f"{job}: entrypoint must be `python -m jobs.X ...`"
    module = argv[2]
    assert module.startswith("jobs."), job
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{job}: no {module}"
    configs = [a for a in argv[3:] if a.endswith(".yaml")]
    assert len(configs) == 1, f"{job}: one config file expected in {argv}"
    assert (ROOT / configs[0]).is_file(), f"{job}: {configs[0]} is not in the repository"
    overrides = [a for a in argv[3:] if "=" in a]
    load_config(ROOT / configs[0], overrides)  # strict: raises on any bad key or value


@pytest.mark.parametrize(("job", "argv"), JOB_COMMANDS, ids=[j for j, _ in JOB_COMMANDS])
def test_entrypoint_arguments_are_accepted_by_the_job(job: str, argv: list[str]) -> None:
    """``jobs.X.main(args + ["--help"])`` exits 0 only if the subcommand path is valid."""
    main = importlib.import_module(argv[2]).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        with pytest.raises(SystemExit) as info:
            main([*argv[3:], "--help"])
    assert info.value.code == 0, f"{job}: {argv[2]} rejects {argv[3:]}:\n{out.getvalue()}"


def test_rayjobs_attach_to_the_cluster_defined_here() -> None:
    clusters = {c["metadata"]["name"] for c in _of_kind("RayCluster")}
    assert clusters
    for job in _of_kind("RayJob"):
        assert job["spec"]["clusterSelector"]["ray.io/cluster"] in clusters
        # With a selector KubeRay must not tear the shared cluster down.
        assert not job["spec"].get("shutdownAfterJobFinishes", False)


def test_images_and_ray_versions_agree() -> None:
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", DOCKERFILE, re.M)[1]
    for kind in ("RayCluster",):
        for doc in _of_kind(kind):
            assert doc["spec"]["rayVersion"] == ray_version
    assert f'org.opencontainers.image.version="{VERSION}"' in DOCKERFILE
    assert f"-t {IMAGE} ." in DOCKERFILE  # the build command in its header: the same image
    for path, doc in DOCS:
        for container in _containers(doc):
            image = container["image"]
            assert not image.endswith(":latest") and ":" in image, (path, image)
            if "textboost" in image:
                assert image == IMAGE, (path, image)


def test_dockerfile_copies_what_the_jobs_need() -> None:
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.M)
    for folder in ("textboost", "pipeline", "jobs", "configs"):
        assert re.search(rf"^COPY {folder} \./{folder}$", DOCKERFILE, re.M), folder
        assert (ROOT / folder).is_dir()
    assert "ray[default" in DOCKERFILE  # the dashboard / Jobs API on the head


def test_resource_requests_are_consistent() -> None:
    for path, doc in DOCS:
        for container in _containers(doc):
            res = container.get("resources", {})
            requests, limits = res.get("requests", {}), res.get("limits", {})
            assert requests and limits, (path, container["name"], "needs requests and limits")
            for key, value in requests.items():
                assert _quantity(value) <= _quantity(limits[key]), (path, container["name"], key)
            if "nvidia.com/gpu" in limits:
                assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]


def _groups(cluster: dict) -> list[tuple[dict, dict]]:
    """(rayStartParams, container) of the head and of every worker group."""
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [(g["rayStartParams"], g["template"]["spec"]["containers"][0]) for g in groups]


def test_ray_start_params_fit_the_pods() -> None:
    for cluster in _of_kind("RayCluster"):
        for params, container in _groups(cluster):
            limits = container["resources"]["limits"]
            assert float(params["num-cpus"]) <= _quantity(limits["cpu"])
            gpus = limits.get("nvidia.com/gpu", "0")
            assert params.get("num-gpus", "0") == str(gpus), container["name"]
        head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"]["limits"]  # CPU head


def test_training_jobs_fit_the_gpu_worker_group() -> None:
    (cluster,) = _of_kind("RayCluster")
    gpu_slots = sum(
        g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", 0))
        for g in cluster["spec"]["workerGroupSpecs"]
    )
    for job, argv in JOB_COMMANDS:
        if argv[2] != "jobs.train":
            continue
        cfg = load_config(_config_of(argv))
        assert cfg.train.use_gpu, job
        assert cfg.train.num_workers <= gpu_slots, job


def test_mlflow_server_uses_postgres_and_an_object_store() -> None:
    (deployment,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = dict(a.split("=", 1) for a in container["args"] if "=" in a)
    backend = args["--backend-store-uri"]
    assert backend.startswith("postgresql://")
    host, port = re.search(r"@([\w.-]+):(\d+)/", backend).groups()
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    assert host in services and int(port) in [p["port"] for p in services[host]["spec"]["ports"]]
    assert any(s["metadata"]["name"] == host for s in _of_kind("StatefulSet"))
    assert args["--artifacts-destination"].startswith("s3://")
    assert "--serve-artifacts" in container["args"]
    # The jobs' configs point at this service.
    port = services["mlflow"]["spec"]["ports"][0]["port"]
    url = f"http://mlflow.{NAMESPACE}.svc.cluster.local:{port}"
    for _, argv in JOB_COMMANDS:
        assert load_config(_config_of(argv)).mlflow.tracking_uri == url


def test_image_placeholders_fill_to_a_valid_reference() -> None:
    """``envsubst`` of the two placeholders (and only them) gives a pullable image name."""
    import string

    env = {"TEXTBOOST_ORG": "acme", "TEXTBOOST_GIT_SHA": "0123abcd" * 5}
    image = string.Template(IMAGE).substitute(env)
    assert image == f"ghcr.io/acme/textboost:{'0123abcd' * 5}"
    assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", image)
    readme = (INFRA / "README.md").read_text()
    assert "envsubst '${TEXTBOOST_ORG} ${TEXTBOOST_GIT_SHA}'" in readme  # nothing else replaced


def test_image_records_its_git_commit(monkeypatch) -> None:
    assert re.search(r"^ARG GIT_COMMIT=", DOCKERFILE, re.M)
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in DOCKERFILE
    assert re.search(r'^ENV TEXTBOOST_GIT_COMMIT="\$\{GIT_COMMIT\}"$', DOCKERFILE, re.M)
    assert "--build-arg GIT_COMMIT=${TEXTBOOST_GIT_SHA}" in DOCKERFILE  # tag == commit
    from pipeline.training import git_commit

    assert re.fullmatch(r"[0-9a-f]{40}", git_commit())  # this checkout: git itself
    monkeypatch.setenv("PATH", "/nonexistent")  # as in the image: no git, no .git
    monkeypatch.setenv("TEXTBOOST_GIT_COMMIT", "feedface" * 5)
    assert git_commit() == "feedface" * 5
    monkeypatch.delenv("TEXTBOOST_GIT_COMMIT")
    assert git_commit() == "unknown"


def test_every_ray_pod_has_a_memory_backed_dev_shm() -> None:
    for cluster in _of_kind("RayCluster"):
        spec = cluster["spec"]
        for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            (container,) = pod["containers"]
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
            shm = volumes[mount["name"]]["emptyDir"]
            assert shm["medium"] == "Memory", container["name"]
            limit = _quantity(container["resources"]["limits"]["memory"])
            assert 2**30 <= _quantity(shm["sizeLimit"]) <= limit / 2, container["name"]


def test_training_ranks_share_one_multi_gpu_pod() -> None:
    """NCCL all-reduce stays inside a node: one pod holds all the GPUs a job's ranks use."""
    (cluster,) = _of_kind("RayCluster")
    (gpu,) = [g for g in cluster["spec"]["workerGroupSpecs"] if "num-gpus" in g["rayStartParams"]]
    per_pod = int(gpu["rayStartParams"]["num-gpus"])
    assert per_pod >= 8  # a whole 8-GPU node, not one 1-GPU pod per GPU
    for job, argv in JOB_COMMANDS:
        if argv[2] == "jobs.train":
            assert load_config(_config_of(argv)).train.num_workers <= per_pod, job


def test_training_deadlines_cover_the_configured_steps() -> None:
    """activeDeadlineSeconds >= steps / the assumed step rate (annotated on the job); stage 1's
    deadline is that arithmetic plus a margin for restarts, not an unrelated number."""
    seen = set()
    for job in _of_kind("RayJob"):
        argv = _commands(job["spec"]["entrypoint"])[0]
        if argv[2] != "jobs.train":
            continue
        rate = float(job["metadata"]["annotations"]["textboost.io/assumed-steps-per-second"])
        assert 0.5 <= rate <= 10, job["metadata"]["name"]  # realistic for ELIC on 8 GPUs
        train = load_config(_config_of(argv)).train
        needed = train.epochs * train.steps_per_epoch / rate
        deadline = job["spec"]["activeDeadlineSeconds"]
        assert deadline >= needed, (job["metadata"]["name"], deadline, needed)
        stage = job["metadata"]["labels"]["textboost.io/stage"]
        if stage == "train-stage1":
            assert deadline <= 1.5 * needed
        seen.add(stage)
    assert seen == {"train-stage1", "train-stage2"}
