"""Hypothesis strategies shared by the geometry, side-info and guidance tests."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from textboost.text.geometry import RotatedRect


def search(examples: int = 150):
    """The property tests' settings: ``examples`` cases, no per-case deadline."""
    return settings(max_examples=examples, deadline=None)


def rotated_rects(cx: tuple, cy: tuple, length: tuple, height: tuple, angle: tuple):
    """``RotatedRect`` with each field drawn from its (low, high) float range."""
    return st.builds(
        RotatedRect, cx=st.floats(*cx), cy=st.floats(*cy), length=st.floats(*length),
        height=st.floats(*height), angle=st.floats(*angle),
    )  # fmt: skip


def point_lists(low: float, high: float, min_size: int, max_size: int):
    """Lists of (x, y) points with coordinates in [low, high]."""
    coords = st.floats(low, high, allow_nan=False)
    return st.lists(st.tuples(coords, coords), min_size=min_size, max_size=max_size)
