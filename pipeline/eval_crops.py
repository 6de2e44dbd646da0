"""Crop panels of an evaluation (``eval.crops``): a window of the image holding the most sent
words, side by side: original, JPEG, backbone, TextBoost (or a baseline model) and the
guidance map. A pure function of the reconstructions: two evaluations give the same bytes."""

from __future__ import annotations

from PIL import Image

from pipeline.eval_data import Sample, SampleResult
from pipeline.eval_outputs import LABELS


def _crop_window(sample: Sample, side: int) -> tuple[int, int, int, int]:
    """A ``side`` x ``side`` window holding the most side-info word centres (first wins)."""
    w, h = sample.image.size
    side = min(side, w, h)
    words = sample.side_words or [x for x in (sample.gt or []) if x.legible]
    centres = [
        (
            sum(p[0] for p in x.polygon) / len(x.polygon),
            sum(p[1] for p in x.polygon) / len(x.polygon),
        )
        for x in words
    ]
    best, best_n = ((w - side) // 2, (h - side) // 2), -1
    for cx, cy in centres:
        x0 = int(min(max(cx - side / 2, 0), w - side))
        y0 = int(min(max(cy - side / 2, 0), h - side))
        n = sum(x0 <= px < x0 + side and y0 <= py < y0 + side for px, py in centres)
        if n > best_n:
            best, best_n = (x0, y0), n
    return best[0], best[1], best[0] + side, best[1] + side


def crop_panel(sample: Sample, label: str, result: SampleResult, side: int = 256) -> tuple:
    """(file name, side-by-side image): original, JPEG, backbone, TextBoost, guidance map."""
    from PIL import ImageDraw, ImageFont

    box = _crop_window(sample, side)
    guide = Image.fromarray(result.guidance).convert("RGB")  # the decoder's guidance map
    bpp = {r["method"]: r["bpp"] for r in result.rows}
    recon = result.recon
    panels = [("Original", sample.image)]
    for m in ("jpeg", "webp", "backbone", "textboost", "roi", "taco_style"):
        if m in recon and not (m == "webp" and "jpeg" in recon):
            panels.append((f"{LABELS[m]} {bpp[m]:.4f} bpp", recon[m]))
    if "textboost" in recon:
        panels.append(("Guidance map", guide))
    else:  # a baseline model: nothing is sent; its encoder read the words' mask or tokens
        from textboost.text.guidance import render_text_mask

        w, h = sample.image.size
        mask = render_text_mask(result.words, h, w) * 255
        panels.append(("Words (encoder only)", Image.fromarray(mask).convert("RGB")))
    cw, ch, strip = box[2] - box[0], box[3] - box[1], 14
    sheet = Image.new("RGB", (len(panels) * (cw + 4), ch + strip), (255, 255, 255))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, (title, im) in enumerate(panels):
        sheet.paste(im.crop(box), (i * (cw + 4), strip))
        draw.text((i * (cw + 4) + 2, 1), title[: max(4, cw // 6)], fill=(0, 0, 0), font=font)
    return f"{sample.key}_{label}.png", sheet
