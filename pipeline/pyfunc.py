"""The TextBoost codec as an MLflow pyfunc model around one ``model.pt`` checkpoint.

``TextBoostCodec.predict`` takes a DataFrame and ``params={"mode": "compress" | "decompress"}``:
compress reads column ``image`` (PNG/JPEG bytes) and optional ``words`` (JSON list of
``Word.to_json()``; without it RapidOCR finds the words) and returns column ``container``
(``.tbx`` bytes); decompress reads ``container`` and returns ``image`` (PNG bytes, written
exactly as ``textboost decompress`` writes its file). ``unwrap_python_model()`` gives the
instance, with ``compress(image, words)`` and ``decompress(data)`` methods.
``log_codec_model`` logs it (``log_model(name=...)``, MLflow 3) with the checkpoint as
artifact ``model.pt`` and registers a new version. Models registered before this module
existed name the class ``pipeline.tracking.TextBoostCodec``, which still resolves.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from textboost.errors import ConfigError

MODES = ("compress", "decompress")
PIP_PACKAGES = ("torch", "compressai", "numpy", "pillow", "shapely", "rapidocr-onnxruntime")


class TextBoostCodec(PythonModel):
    """TextBoost codec as an MLflow pyfunc (see the module docstring for the data contract)."""

    def load_context(self, context) -> None:
        from textboost.model.checkpoint import load_checkpoint

        cfg = dict(getattr(context, "model_config", None) or {})
        self.t_test = float(cfg.get("t_test", 800.0))
        self.select = str(cfg.get("select", "threshold"))  # eval.select it was measured with
        self.side_info_format = str(cfg.get("side_info_format", "compact"))
        self.model, self.meta = load_checkpoint(context.artifacts["checkpoint"])

    def compress(self, image, words=None) -> bytes:
        """PIL image (+ optional ``Word`` list; None: RapidOCR) -> container bytes."""
        from textboost.codec.image_codec import encode_image, to_rgb8
        from textboost.codec.legibility import choose_words
        from textboost.text.filtering import filter_words

        image = to_rgb8(image)
        if words is None:
            from pipeline.sample_words import ocr_words

            words = ocr_words(image)
        kept, _ = filter_words(words, self.t_test)
        fmt = self.side_info_format
        chosen = choose_words(self.model, image, kept, self.select, fmt)
        return encode_image(self.model, image, chosen.words, fmt, levels=chosen.levels)

    def decompress(self, data: bytes):
        """Container bytes -> PIL image."""
        from textboost.codec.image_codec import decode_container

        return decode_container(self.model, bytes(data))

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        mode = (params or {}).get("mode", "compress")
        if mode not in MODES:
            raise ConfigError(f"pyfunc params mode={mode!r}; choose one of {list(MODES)}")
        rows = model_input.to_dict(orient="records")
        if mode == "decompress":
            return pd.DataFrame(
                {"image": [png_bytes(self.decompress(r["container"])) for r in rows]}
            )
        out = []
        for r in rows:
            words = _words_from_json(r.get("words"))
            out.append(self.compress(_open_image(r["image"]), words))
        return pd.DataFrame({"container": out})


def png_bytes(image) -> bytes:
    """PNG bytes with the settings of ``textboost decompress`` (Pillow's defaults)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _open_image(data: bytes):
    """Untrusted image bytes as 8-bit RGB: pixel limit from the header, high bit depths
    scaled (``textboost.codec.image_codec.open_image``); anything else raises ``ImageError``."""
    from textboost.codec.image_codec import open_image

    return open_image(bytes(data), name="pyfunc input column 'image'")


def _words_from_json(value: Any):
    from textboost.errors import AnnotationError
    from textboost.text.words import Word

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        items = json.loads(value) if isinstance(value, str | bytes) else value
        return [Word.from_json(w) for w in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise AnnotationError(
            f"pyfunc input column 'words' must be a JSON list of Word.to_json() records: {exc}"
        ) from None


def codec_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("binary", "image", required=False),
            ColSpec("string", "words", required=False),
            ColSpec("binary", "container", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec("binary", "container", required=False), ColSpec("binary", "image", required=False)]
    )
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("mode", "string", "compress")]))


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in PIP_PACKAGES:
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def log_codec_model(
    checkpoint: str,
    name: str,
    registered_model: str | None,
    model_config: dict | None = None,
    tags: dict | None = None,
):
    """Log ``checkpoint`` as a pyfunc in the active run (artifact ``model.pt``) and register it.

    Returns MLflow's ``ModelInfo`` (``registered_model_version`` set when registered).
    """
    import mlflow.pyfunc

    from textboost.model.checkpoint import FILENAME, resolve_checkpoint

    src = resolve_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, FILENAME)  # the file inside the model must be model.pt
        if "://" in src:
            import fsspec

            with fsspec.open(src, "rb") as f, open(local, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(src, local)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=TextBoostCodec(),
            artifacts={"checkpoint": local},
            signature=codec_signature(),
            model_config=model_config or {},
            registered_model_name=registered_model,
            pip_requirements=_pip_requirements(),
            tags=tags,
        )
