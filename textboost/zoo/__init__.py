"""The model zoo: trained TextBoost models shipped inside the package, ready to use.

Each model ``NAME`` is two files in ``textboost/zoo/weights/``:

- ``NAME.pt``: a TextBoost checkpoint (``textboost.model.checkpoint`` format) whose floating-point
  parameters are stored in fp16, which halves the file. ``load_checkpoint`` converts them back
  to fp32; the recorded identity is the one of those fp32 weights (rounded through fp16, the
  entropy tables refreshed from them), so every load gives the same ``identity()`` and a
  container written with a zoo model decodes with the same zoo model anywhere.
- ``NAME.json``: the model card: ``name``, ``bpp``, ``psnr``, ``ms_ssim``, ``det_f1``,
  ``e2e_f1``, ``config`` (the ``configs/zoo/*.yaml`` that produced it), ``data``, ``steps``,
  ``wall_time_s``, ``description``, free-form fields, and what ``export`` adds (``sha256`` and
  ``size_bytes`` of ``NAME.pt``, ``model_identity``, ``model_config``, ``stage``, ``dtype``).

Everything that takes a model takes ``zoo:NAME`` (``load_checkpoint``, ``--model`` of
compress / decompress, ``train.init_checkpoint``, ``eval.models``). The environment variable
``TEXTBOOST_ZOO_DIR`` points the zoo at another folder (tests, a maintainer's staging area).
CLI: ``textboost zoo list [--json]``, ``textboost zoo show NAME``,
``textboost zoo export CHECKPOINT NAME --card card.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

from textboost.errors import ZooError

PREFIX = "zoo:"
ENV_DIR = "TEXTBOOST_ZOO_DIR"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MAX_FILE_BYTES = 8_000_000  # one NAME.pt (decimal MB)
MAX_TOTAL_BYTES = 25_000_000  # every NAME.pt together: the zoo ships inside the wheel
REQUIRED_FIELDS = (
    "name", "bpp", "psnr", "ms_ssim", "det_f1", "e2e_f1", "config", "data", "steps",
    "wall_time_s", "description",
)  # fmt: skip
NUMERIC_FIELDS = ("bpp", "psnr", "ms_ssim", "det_f1", "e2e_f1", "steps", "wall_time_s")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

__all__ = [
    "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "PREFIX", "REQUIRED_FIELDS", "card", "directory",
    "export", "is_zoo_uri", "list_models", "names", "path", "resolve", "sha256",
]  # fmt: skip


def directory() -> Path:
    """The zoo folder: ``$TEXTBOOST_ZOO_DIR`` if set, else the package's ``weights/``."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else WEIGHTS_DIR


def is_zoo_uri(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` is ``zoo:NAME``."""
    return isinstance(uri, str) and uri.startswith(PREFIX)


def names() -> list[str]:
    """Names of the shipped models (one per ``NAME.pt``), sorted."""
    d = directory()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.pt") if p.is_file())


def _unknown(name: str) -> ZooError:
    available = names()
    listing = ", ".join(available) if available else "none (the zoo is empty)"
    return ZooError(f"unknown zoo model {name!r}; available: {listing} (see `textboost zoo list`)")


def path(name: str) -> Path:
    """The ``NAME.pt`` of zoo model ``name`` (``ZooError`` listing the names if unknown)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise _unknown(str(name))
    p = directory() / f"{name}.pt"
    if not p.is_file():
        raise _unknown(name)
    return p


def resolve(uri: str) -> str:
    """``zoo:NAME`` -> local path of ``NAME.pt`` (used by ``textboost.model.checkpoint``)."""
    return str(path(uri[len(PREFIX) :] if is_zoo_uri(uri) else uri))


def card(name: str) -> dict:
    """The model card (``NAME.json``) of zoo model ``name``."""
    weights = path(name)
    card_path = weights.with_suffix(".json")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"zoo model {name!r} has no model card {card_path.name}") from None
    except (OSError, ValueError) as exc:
        raise ZooError(f"model card {card_path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ZooError(f"model card {card_path} is not a JSON object")
    return data


def operating_threshold(uri: str) -> float | None:
    """The side-info threshold ``t_test`` a ``zoo:NAME`` model's figures were measured at
    (its card), or None for another model URI or a card without one."""
    if not is_zoo_uri(uri):
        return None
    value = card(uri[len(PREFIX) :]).get("t_test")
    return float(value) if value else None


def operating_select(uri: str) -> str | None:
    """How a ``zoo:NAME`` model's figures chose the words it sends (its card's ``select``:
    ``threshold`` or ``legible``, ``textboost.codec.legibility``), or None for another model
    URI or a card without one."""
    if not is_zoo_uri(uri):
        return None
    value = card(uri[len(PREFIX) :]).get("select")
    return value if value in ("threshold", "legible") else None


def list_models() -> list[dict]:
    """Every model card, sorted by bpp (then name)."""

    def key(c: dict):
        bpp = c.get("bpp")
        ok = isinstance(bpp, int | float) and not isinstance(bpp, bool) and math.isfinite(bpp)
        return (0 if ok else 1, bpp if ok else 0.0, str(c.get("name", "")))

    return sorted((card(n) for n in names()), key=key)


def sha256(name: str) -> str:
    """sha256 (hex) of the bytes of zoo model ``name``'s ``NAME.pt`` (for lineage)."""
    h = hashlib.sha256()
    with open(path(name), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- shipping a model


def check_card(card: dict, name: str) -> dict:
    """``card`` with ``name`` set; ``ZooError`` if a required field is missing or a metric is
    not a number (``null`` is allowed for metrics that were not measured, not for bpp)."""
    if not isinstance(card, dict):
        raise ZooError(f"the model card must be a JSON object, got {type(card).__name__}")
    if card.get("name", name) != name:
        raise ZooError(f"the card names {card['name']!r} but the model is exported as {name!r}")
    out = {"name": name, **{k: v for k, v in card.items() if k != "name"}}
    missing = [f for f in REQUIRED_FIELDS if f not in out]
    if missing:
        raise ZooError(
            f"model card for {name!r} lacks {', '.join(missing)} (required: "
            f"{', '.join(REQUIRED_FIELDS)})"
        )
    for f in NUMERIC_FIELDS:
        v = out[f]
        if v is None and f != "bpp":
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ZooError(f"model card for {name!r}: {f} must be a finite number, got {v!r}")
    for f in ("config", "data", "description"):
        if not isinstance(out[f], str):
            raise ZooError(f"model card for {name!r}: {f} must be a string, got {out[f]!r}")
    return out


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_card(name: str, card: dict) -> None:
    """Replace a shipped model's card (its weights unchanged: a re-evaluation's figures)."""
    full = check_card(card, name)
    if full.get("sha256") != sha256(name):
        raise ZooError(f"the card's sha256 does not match {name}.pt: export the model instead")
    text = json.dumps(full, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(path(name).with_suffix(".json"), text.encode("utf-8"))


def export(
    checkpoint: str | os.PathLike,
    name: str,
    card: dict,
    *,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    limits: tuple[int, int] | None = None,
) -> dict:
    """Ship a checkpoint (path, URL, ``runs:/``, ``models:/``, ``zoo:``) as zoo model
    ``name``: writes ``NAME.pt`` (parameters in fp16) and ``NAME.json`` (``card`` plus the
    fields export computes) into the zoo folder (or ``out_dir``); returns the written card.

    Refuses a file over ``MAX_FILE_BYTES``, a zoo over ``MAX_TOTAL_BYTES`` (``limits``: other
    (file, folder) limits in bytes, for a folder outside the wheel), an incomplete
    card, and an existing name unless ``overwrite`` (a new export is another model identity:
    containers written with the old one no longer decode with it)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ZooError(f"zoo model name {name!r} must match {NAME_RE.pattern}")
    dest = Path(out_dir) if out_dir is not None else directory()
    target = dest / f"{name}.pt"
    if target.exists() and not overwrite:
        raise ZooError(f"zoo model {name!r} exists ({target}); pass overwrite to replace it")
    full_card = check_card(card, name)
    data, fields = _fp16_file(checkpoint, name)
    _check_sizes(name, data, dest, target, limits or (MAX_FILE_BYTES, MAX_TOTAL_BYTES))
    full_card.update(fields)
    dest.mkdir(parents=True, exist_ok=True)
    _write_verified(target, data, fields["model_identity"])
    text = json.dumps(full_card, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(target.with_suffix(".json"), text.encode("utf-8"))
    return full_card


def _fp16_file(checkpoint: str | os.PathLike, name: str) -> tuple[bytes, dict]:
    """The bytes of ``NAME.pt`` for ``checkpoint`` (its parameters in fp16) and the card
    fields export computes (``sha256``, ``size_bytes``, ``model_identity``, ...). The recorded
    identity is the one of the fp32 weights the file loads back to."""
    import torch

    from textboost.config import to_dict
    from textboost.model.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    params = {n for n, _ in model.named_parameters()}
    with torch.no_grad():  # the fp32 weights the zoo file will load back to
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.to(torch.float16).to(p.dtype))
    extra = dict(meta.get("extra") or {})
    extra["zoo"] = {
        "name": name,
        "dtype": "float16",
        "source_identity": meta.get("model_identity"),
    }
    with tempfile.TemporaryDirectory() as tmp:  # refreshes the CDF tables, records identity
        fp32 = os.path.join(tmp, "model.pt")
        identity = save_checkpoint(
            fp32, model, model.model_cfg, meta.get("run_config"),
            meta.get("manifest_sha256") or "", int(meta.get("stage") or 1), extra,
        )  # fmt: skip
        payload = torch.load(fp32, map_location="cpu", weights_only=True)
    payload["state_dict"] = {
        k: v.to(torch.float16) if k in params and v.is_floating_point() else v
        for k, v in payload["state_dict"].items()
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    fields = dict(
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        model_identity=identity,
        model_config=to_dict(model.model_cfg),
        stage=int(payload.get("stage") or 1),
        dtype="float16",
        source_checkpoint=os.fspath(checkpoint),
        source_identity=meta.get("model_identity"),
    )
    return data, fields


def _check_sizes(name: str, data: bytes, dest: Path, target: Path, limits: tuple) -> None:
    """``ZooError`` if ``data`` is over the file limit or would take the folder ``dest``
    (``target`` replaced) over the folder limit (``limits``: bytes)."""
    max_file, max_total = limits
    if len(data) > max_file:
        raise ZooError(
            f"{name}.pt would be {len(data) / 1e6:.1f} MB; zoo files are limited to "
            f"{max_file / 1e6:.0f} MB (ship a smaller model)"
        )
    others = sum(p.stat().st_size for p in dest.glob("*.pt") if p.name != target.name)
    if others + len(data) > max_total:
        raise ZooError(
            f"the zoo would hold {(others + len(data)) / 1e6:.1f} MB of weights; the limit is "
            f"{max_total / 1e6:.0f} MB"
        )


def _write_verified(target: Path, data: bytes, identity: str) -> None:
    """Write ``target``; removed again unless it loads back to model ``identity``."""
    from textboost.model.checkpoint import load_checkpoint

    _write_atomic(target, data)
    try:  # the file must load back to the recorded identity
        loaded, _ = load_checkpoint(target)
        if loaded.identity() != identity:
            raise ZooError(f"{target} loads as {loaded.identity()}, not {identity}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
