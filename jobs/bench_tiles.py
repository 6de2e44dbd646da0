"""Tile-group benchmark of the sparse fusion path: flood fill vs ``scipy.ndimage.label``.

    python -m jobs.bench_tiles [--width 1024] [--height 768] [--words 30] [--maps 200]

``textboost.model.fusion.sparse_apply`` runs the fusion block on the 8-connected groups of active
``TILE`` px tiles. This times the two ways of finding those groups on realistic active-tile
maps (word boxes of scene-text size at random places, dilated by the default gate radius,
pooled to tiles): the hand-written flood fill it used first (kept here as the reference) and
``textboost.model.fusion._tile_groups``; both must give the same boxes in the same order. CPU time
of this single-threaded process: it holds up on a busy machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def flood_fill_groups(active: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The first implementation: bounding boxes of 8-connected groups, by a stack flood fill."""
    seen = np.zeros_like(active, dtype=bool)
    boxes = []
    for sy, sx in zip(*np.nonzero(active)):
        if seen[sy, sx]:
            continue
        seen[sy, sx] = True
        stack, box = [(sy, sx)], [sy, sy + 1, sx, sx + 1]
        while stack:
            y, x = stack.pop()
            box = [min(box[0], y), max(box[1], y + 1), min(box[2], x), max(box[3], x + 1)]
            for ny in range(max(0, y - 1), min(active.shape[0], y + 2)):
                for nx in range(max(0, x - 1), min(active.shape[1], x + 2)):
                    if active[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        boxes.append(tuple(int(v) for v in box))
    return boxes


def active_map(rng: np.random.Generator, width: int, height: int, words: int) -> np.ndarray:
    """Tiles touched by ``words`` word boxes (20-320 x 10-60 px) dilated by the gate radius."""
    from textboost.config import ModelConfig
    from textboost.model.fusion import TILE

    radius = ModelConfig().fusion_gate_radius
    gate = np.zeros((height, width), bool)
    for _ in range(words):
        w, h = int(rng.integers(20, 320)), int(rng.integers(10, 60))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        gate[max(0, y - radius) : y + h + radius, max(0, x - radius) : x + w + radius] = True
    th, tw = -(-height // TILE), -(-width // TILE)
    padded = np.zeros((th * TILE, tw * TILE), bool)
    padded[:height, :width] = gate
    return padded.reshape(th, TILE, tw, TILE).any(axis=(1, 3))


def cpu_ms(fn, maps: list[np.ndarray], rounds: int) -> float:
    """Best-of-``rounds`` mean CPU milliseconds of ``fn`` per map."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for m in maps:
            fn(m)
        best = min(best, time.process_time() - t0)
    return 1000 * best / len(maps)


def main(argv: list[str] | None = None) -> int:
    from textboost.model.fusion import _tile_groups

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--words", type=int, default=30)
    p.add_argument("--maps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    maps = [active_map(rng, args.width, args.height, args.words) for _ in range(args.maps)]
    same = all(flood_fill_groups(m) == _tile_groups(m) for m in maps)
    fill = cpu_ms(flood_fill_groups, maps, args.rounds)
    now = cpu_ms(_tile_groups, maps, args.rounds)
    groups = np.mean([len(_tile_groups(m)) for m in maps])
    tiles = np.mean([m.mean() for m in maps])
    print(f"{args.maps} maps {args.width}x{args.height}, {args.words} words: "
          f"{100 * tiles:.0f} % of tiles active, {groups:.1f} groups a map")  # fmt: skip
    print(f"flood fill:                {fill:.3f} ms a map")
    print(f"model.fusion (now):        {now:.3f} ms a map ({fill / now:.1f}x)")
    print(f"same boxes, same order:    {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
