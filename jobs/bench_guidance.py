"""``python -m jobs.bench_guidance``: speed of the guidance renderer, size of the side info.

On synthetic TextOCR-format data (``textboost.data.synth``, 1024 px long side) it prints:

* guidance maps/s on one core (targets >= 100) for the words the pipeline sends (filtered at
  T_test, decoded from the compact side info) and for every legible word, and text masks/s;
* side-info bytes per image, gzip JSON (the paper) vs compact (ours; target <= 0.6 x gzip),
  and what each costs in bpp;
* with ``--textocr-words N`` (e.g. 700000, the size of TextOCR train): time and peak memory
  of ``read_textocr`` on a TextOCR-layout file of N words built from the synthetic ones.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.bench_guidance", description=__doc__)
    p.add_argument("--images", type=int, default=32, help="synthetic images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-side", type=int, default=1024)
    p.add_argument("--words", type=int, nargs=2, default=(4, 24), metavar=("MIN", "MAX"),
                   help="words per synthetic image (TextOCR averages ~32)")  # fmt: skip
    p.add_argument("--data", help="existing synthetic TextOCR folder (default: generate one)")
    p.add_argument("--t", type=float, default=800.0, help="filter threshold (T_test)")
    p.add_argument("--rounds", type=int, default=3, help="render passes over the images")
    p.add_argument("--textocr-words", type=int, default=0, help="also time a parse of N words")
    return p


def rate(fn, items: list, rounds: int) -> tuple[float, float]:
    """Calls per CPU second of ``fn`` over ``items``: first pass (glyph caches empty), best pass.

    CPU time of this single-threaded process (``time.process_time``) is what one core
    delivers, whatever else runs on the machine.
    """
    from textboost.text import guidance

    guidance._glyph.cache_clear()
    guidance._natural_size.cache_clear()
    times = []
    for _ in range(max(1, rounds)):
        t0 = time.process_time()
        for item in items:
            fn(*item)
        times.append(time.process_time() - t0)
    return len(items) / times[0], len(items) / min(times)


def bench_maps(index, t: float, rounds: int) -> dict:
    from textboost.text.filtering import filter_words
    from textboost.text.guidance import render_guidance, render_text_mask
    from textboost.text.side_info import bits_per_pixel, decode_side_info, encode_side_info

    sent, legible, sizes, bpp = [], [], {"gzip": [], "compact": []}, {"gzip": [], "compact": []}
    methods: Counter = Counter()
    for image_id in index.image_ids():
        info, words = index.info(image_id), index.words(image_id)
        kept, _ = filter_words(words, t)
        for fmt in sizes:
            data = encode_side_info(kept, (info.width, info.height), fmt)
            sizes[fmt].append(len(data))
            bpp[fmt].append(bits_per_pixel(data, info.width, info.height))
        methods[["stored", "deflate", "lzma", "bz2"][data[0] & 0x0F]] += 1
        sent.append((decode_side_info(data), info.height, info.width))
        legible.append(([w for w in words if w.legible], info.height, info.width))
    return {
        "images": len(sent),
        "words_sent_per_image": statistics.mean(len(w) for w, _, _ in sent),
        "words_legible_per_image": statistics.mean(len(w) for w, _, _ in legible),
        "maps_per_s_sent": rate(render_guidance, sent, rounds),  # (cold, warm)
        "maps_per_s_all_legible": rate(render_guidance, legible, rounds),
        "masks_per_s_sent": rate(render_text_mask, sent, rounds),
        "side_info_bytes_gzip": statistics.mean(sizes["gzip"]),
        "side_info_bytes_compact": statistics.mean(sizes["compact"]),
        "compact_over_gzip": sum(sizes["compact"]) / sum(sizes["gzip"]),
        "bpp_gzip": statistics.mean(bpp["gzip"]),
        "bpp_compact": statistics.mean(bpp["compact"]),
        "compact_compressor": dict(methods),
    }


def write_big_textocr(path: Path, index, n_words: int, seed: int) -> None:
    """Stream a TextOCR-layout file of ``n_words`` (synthetic words, jittered, 30 per image)."""
    pool = [(w, index.info(i)) for i in index.image_ids() for w in index.words(i)]
    rng = random.Random(seed)
    imgs, img2anns = {}, {}
    with path.open("w") as f:
        f.write('{"anns": {')
        for k in range(n_words):
            word, info = pool[rng.randrange(len(pool))]
            img_id = f"{k // 30:016x}"
            if img_id not in imgs:
                imgs[img_id] = {"id": img_id, "width": info.width, "height": info.height,
                                "set": "train", "file_name": f"train/{img_id}.jpg"}  # fmt: skip
                img2anns[img_id] = []
            ann_id = f"{img_id}_{len(img2anns[img_id]) + 1}"
            pts = [round(c + rng.uniform(-2, 2), 2) for p in word.polygon for c in p]
            xs, ys = pts[0::2], pts[1::2]
            bbox = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
            ann = {"id": ann_id, "image_id": img_id, "bbox": bbox,
                   "utf8_string": word.text if word.legible else ".", "points": pts,
                   "area": round(bbox[2] * bbox[3], 2)}  # fmt: skip
            f.write(("," if k else "") + json.dumps(ann_id) + ": " + json.dumps(ann))
            img2anns[img_id].append(ann_id)
        f.write('}, "imgs": ' + json.dumps(imgs) + ', "imgToAnns": ' + json.dumps(img2anns) + "}")


PARSE_CHILD = """
import gc, json, sys, time
from textboost.text.ocr import read_textocr

def mem(key):  # MB, from /proc: VmHWM is the peak resident set of this process
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

import fsspec  # imported by the reader; counted in the baseline
before = mem("VmRSS")
t0, c0 = time.perf_counter(), time.process_time()
index = read_textocr(sys.argv[1])
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
gc.collect()
t1 = time.perf_counter()
n = sum(len(index.words(i)) for i in index.image_ids())
print(json.dumps({"parse_s": seconds, "parse_cpu_s": cpu, "rss_before_mb": before, "peak_rss_mb": mem("VmHWM"),
                  "rss_after_mb": mem("VmRSS"), "images": len(index), "words": index.num_words,
                  "words_all_images_s": time.perf_counter() - t1}))
"""


def bench_parse(index, n_words: int, seed: int, tmp: Path) -> dict:
    path = tmp / "textocr_big.json"
    write_big_textocr(path, index, n_words, seed)
    out = subprocess.run(
        [sys.executable, "-c", PARSE_CHILD, str(path)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    result["file_mb"] = path.stat().st_size / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    from textboost.text.ocr import read_textocr

    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_guidance_") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "synth"
        if not args.data:
            from textboost.data.synth_sets import generate

            print(f"generating {args.images} synthetic images (max side {args.max_side}) ...")
            generate(data, args.images, args.seed, "textocr", None, args.max_side, words=args.words)
        index = read_textocr(data / "textocr.json")
        print(f"one core (CPU time), {len(index)} images, {index.num_words} words")
        figures = bench_maps(index, args.t, args.rounds)
        if args.textocr_words:
            figures["textocr_parse"] = bench_parse(index, args.textocr_words, args.seed, Path(tmp))
    for key, value in figures.items():
        print(f"  {key:28s} {value:.4g}" if isinstance(value, float) else f"  {key:28s} {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
