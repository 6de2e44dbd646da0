"""Validation during training, on the val shards the training shards were built with.

``RDValidator`` (both stages): at the end of every epoch and every ``train.val_every`` steps,
rank 0 computes the stage's loss, bpp and PSNR on ``train.val_crops`` fixed crops of the val
split (``val.loss``, ``val.bpp``, ``val.mse``, ``val.psnr``, means over the crops): windows
of ``train.crop_size`` cut with a seeded generator (the same crops every time, as the loader
cuts them, zero-padded when an image is smaller), model in eval mode, so the latents are
rounded and the rate is what the codec would spend; fp32, no autocast.

``Validator`` (stage 2): text-spotting F1 on a fixed subset of the val shards.

Every ``train.val_every`` steps rank 0 runs the current model on the first
``train.val_images`` samples of the val split (same latents for both outputs: the backbone's
``x_base`` and the fused ``x_hat``, eval mode, so the rate is what the codec would spend),
spots words with RapidOCR and scores them against the sample's sent words (``ocr.json``,
filtered with T_test). MLflow then shows the learning curve of what stage 2 is for:
``val.det_f1`` / ``val.e2e_f1`` against ``val.base_det_f1`` / ``val.base_e2e_f1``, plus
``val.psnr`` / ``val.base_psnr``. Ground truth here is the sent words only (unsent large
words count as false positives for both outputs alike); the evaluation job scores against the
full annotations.
"""

from __future__ import annotations

import io
import random
import tarfile

import numpy as np
import torch


def _read_samples(urls: list[str], limit: int) -> list[dict]:
    """The first ``limit`` samples (field dicts) of the shards, in shard order."""
    import fsspec

    out: list[dict] = []
    for url in urls:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=io.BytesIO(f.read())) as tar:
            current: dict = {}
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                key, _, field = member.name.partition(".")
                if current and current["__key__"] != key:
                    out.append(current)
                    current = {}
                current["__key__"] = key
                current[field] = tar.extractfile(member).read()
            if current:
                out.append(current)
        if len(out) >= limit:
            break
    return out[:limit]


class Validator:
    """Fixed validation subset, prepared once (images, guidance, colour maps, sent words)."""

    def __init__(self, urls: list[str], n_images: int, with_colour: bool):
        from pipeline.crops import decode_sample

        self.items = []
        for sample in _read_samples(urls, n_images):
            image, guidance, words = decode_sample(sample)
            item = {
                "x": torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0,
                "g": torch.from_numpy(guidance)[None, None].float() / 255.0,
                "words": words,
                "image": image.copy(),
            }
            if with_colour:
                from textboost.text.colours import colour_guidance, word_colours

                cmap, box = colour_guidance(guidance, words, word_colours(image, words))
                item["cmap"] = torch.from_numpy(cmap).permute(2, 0, 1)[None].float() / 255.0
                item["box"] = torch.from_numpy(box)[None, None].float()
            self.items.append(item)

    def run(self, model) -> dict[str, float]:
        """F1 and PSNR of fused and backbone outputs on the subset (model left in train mode)."""
        from PIL import Image

        from textboost.scoring.f1 import SpottingCounts, match_image
        from textboost.scoring.metrics import psnr
        from textboost.scoring.spotting import get_spotter

        spotter = get_spotter()
        prefixes = {"x_hat": "val.", "x_base": "val.base_"}
        counts = dict.fromkeys(prefixes, SpottingCounts())
        psnrs: dict[str, list[float]] = {k: [] for k in prefixes}
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device  # the GPU in a GPU run
            for item in self.items:
                inputs = [item.get(k) for k in ("x", "g", "cmap", "box")]
                inputs = [None if t is None else t.to(device) for t in inputs]
                with torch.no_grad():
                    out = model(*inputs)
                for key in prefixes:
                    arr = out[key][0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu()
                    recon = Image.fromarray(np.ascontiguousarray(arr.numpy()))
                    counts[key] = counts[key] + match_image(item["words"], spotter.spot(recon))
                    psnrs[key].append(psnr(item["image"], np.asarray(recon)))
        finally:
            model.train(was_training)
        metrics = {}
        for key, prefix in prefixes.items():
            s = counts[key].scores()
            metrics[f"{prefix}det_f1"] = s["det_f1"]
            metrics[f"{prefix}e2e_f1"] = s["e2e_f1"]
            metrics[f"{prefix}psnr"] = float(np.mean(psnrs[key])) if psnrs[key] else 0.0
        return metrics


def _row(value, i: int):
    """Row ``i`` (as a batch of one) of a batch tensor or of a dict of them (word tokens)."""
    if isinstance(value, dict):
        return {k: v[i : i + 1] for k, v in value.items()}
    return value[i : i + 1]


class RDValidator:
    """Loss, bpp and PSNR of the current model on fixed val-shard crops (see the module doc)."""

    def __init__(
        self, urls: list[str], n_crops: int, crop_size: int, seed: int, with_mask: bool,
        with_colour: bool, text_prob: float, device, with_text: bool = False,
    ):  # fmt: skip
        from pipeline.crops import collate, decode_sample, random_crop
        from pipeline.loader import derive_seed

        crops = []
        for i, sample in enumerate(_read_samples(urls, n_crops)):
            image, guidance, words = decode_sample(sample)
            rng = random.Random(derive_seed(seed, "val", i))
            crops.append(
                random_crop(image, guidance, words, crop_size, rng, with_mask, text_prob,
                            with_colour, with_text)
            )  # fmt: skip
        self.batch = collate(crops, 0, 0) if crops else None
        self.device = device

    def __len__(self) -> int:
        return 0 if self.batch is None else len(self.batch["keys"])

    def run(self, model, criterion) -> dict[str, float]:
        """``val.*`` means over the crops (one forward pass per crop; the model is left in the
        mode it was in)."""
        from pipeline.crops import to_float
        from textboost.model.losses import GuidanceTargetLoss
        from textboost.model.train_steps import unwrap

        if self.batch is None:
            return {}
        inputs = to_float(self.batch, self.device)
        sums = {"loss": 0.0, "bpp_loss": 0.0, "mse_loss": 0.0, "psnr": 0.0}
        was_training = model.training
        model.eval()
        try:  # eval mode draws no random numbers; fork_rng makes sure training's stay the same
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                for i in range(len(self)):
                    one = {k: _row(v, i) for k, v in inputs.items()}
                    x, g, mask = one["image"], one["guidance"], one["text_mask"]
                    cmap, box = one.get("cmap"), one.get("box")
                    kind = unwrap(model).kind  # the baselines' encoder inputs
                    enc = {"roi_mask": mask} if kind == "roi" else {}
                    if "text" in one:
                        enc["text"] = one["text"]
                    out = model(x, g, cmap, box, **enc) if cmap is not None else model(x, g, **enc)
                    if isinstance(criterion, GuidanceTargetLoss):
                        losses = criterion(out, x, mask, {"guidance": g, "cmap": cmap, "box": box})
                    else:
                        losses = criterion(out, x, mask)
                    for key in sums:
                        sums[key] += float(losses[key])
        finally:
            model.train(was_training)
        names = {
            "loss": "val.loss",
            "bpp_loss": "val.bpp",
            "mse_loss": "val.mse",
            "psnr": "val.psnr",
        }
        return {names[k]: v / len(self) for k, v in sums.items()}
