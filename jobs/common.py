"""Small helpers shared by entry points."""

from __future__ import annotations

import argparse
import math
import os
import stat
from pathlib import Path

from textboost.config import TextBoostConfig, load_config
from textboost.errors import ConfigError, StorageError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.stage=2")


def config_from_args(args: argparse.Namespace) -> TextBoostConfig:
    return load_config(args.config, args.overrides)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def refuse_same_file(source: str, output: str) -> None:
    """``ConfigError`` when ``output`` names the input file itself (it would be destroyed)."""
    try:
        same = os.path.samefile(source, output)
    except (OSError, ValueError):
        same = "://" not in source and os.path.realpath(source) == os.path.realpath(output)
    if same:
        raise ConfigError(
            f"-o {output} is the input file itself; refusing to overwrite it: choose another "
            "output path"
        )


def write_output(path: str, data: bytes, what: str = "output") -> None:
    """Write ``data`` to the local file ``path`` (parent folders created); a directory, a
    path under a file, a full disk or missing permissions raise ``StorageError`` naming it.
    A regular file left half-written by a failed write is removed."""
    target = Path(path)
    if target.is_dir():
        raise StorageError(f"cannot write {what} {path}: it is a directory; give a file name")
    for parent in target.parents:  # the first existing ancestor must be a folder
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise StorageError(f"cannot write {what} {path}: {parent} is a file, not a folder")
            break
    opened = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            opened = True
            f.write(data)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        try:
            if opened and stat.S_ISREG(target.stat().st_mode):
                target.unlink()  # no truncated output behind
        except OSError:
            pass
        raise StorageError(
            f"cannot write {what} {path}: {reason}; check the path, free space and permissions"
        ) from None


def check_model_service(model: str) -> None:
    """For an MLflow model URI (``models:/``, ``runs:/``): the tracking and registry servers
    it resolves through must answer within seconds (``ServiceError`` names the URI), before
    MLflow's client would retry for minutes."""
    if not model.startswith(("models:/", "runs:/")):
        return
    import mlflow

    from pipeline.tracking import probe_server

    for uri in {mlflow.get_tracking_uri(), mlflow.get_registry_uri()}:
        if str(uri).startswith(("http://", "https://")):
            probe_server(str(uri))
