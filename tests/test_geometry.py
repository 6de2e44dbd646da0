"""Geometry of text boxes (paper 4.1): repair, minimal rotated rectangle, angle, scan conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon
from strategies import point_lists, rotated_rects, search

from textboost.errors import GeometryError
from textboost.text.geometry import (
    RotatedRect,
    min_rotated_rect,
    normalize_angle,
    principal_angle,
    rasterize_polygon,
    repair_polygon,
)

SETTINGS = search(150)
angles = st.floats(-179.9, 180.0, allow_nan=False)
rects = rotated_rects((-50, 1100), (-50, 1100), (2, 400), (2, 120), (-179.9, 180.0))
polygons = point_lists(-1e4, 1e4, 3, 12)


def angle_diff(a: float, b: float) -> float:
    return abs(normalize_angle(a - b))


def rotate(points, theta: float, cx: float, cy: float):
    """Rotate image-space points by ``theta`` degrees counter-clockwise on screen."""
    t = math.radians(theta)
    c, s = math.cos(t), math.sin(t)
    return [(cx + c * (x - cx) + s * (y - cy), cy - s * (x - cx) + c * (y - cy)) for x, y in points]


def test_rect_corners_are_in_reading_order():
    r = RotatedRect(10, 20, 8, 4, 0)
    assert r.corners() == ((6, 18), (14, 18), (14, 22), (6, 22))
    up = RotatedRect(0, 0, 8, 4, 90).corners()  # reads upwards: first corner bottom-left
    assert np.allclose(up, [(-2, 4), (-2, -4), (2, -4), (2, 4)])


@SETTINGS
@given(rects)
def test_min_rotated_rect_recovers_a_rectangle(r):
    got = min_rotated_rect(r.corners())
    assert math.isclose(got.cx, r.cx, abs_tol=1e-6) and math.isclose(got.cy, r.cy, abs_tol=1e-6)
    assert math.isclose(got.length, r.length, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(got.height, r.height, rel_tol=1e-9, abs_tol=1e-6)
    assert angle_diff(got.angle, r.angle) < 1e-6  # full circle: upside down stays upside down


@SETTINGS
@given(rects, angles)
def test_angle_rotates_with_the_box(r, theta):
    pts = rotate(r.corners(), theta, 300.0, 200.0)
    assert angle_diff(min_rotated_rect(pts).angle, r.angle + theta) < 1e-6
    if r.length > 1.05 * r.height:
        assert angle_diff(principal_angle(pts), r.angle + theta) < 1e-6
        assert angle_diff(principal_angle(pts, "lsq"), r.angle + theta) < 1e-6


def test_principal_edge_is_the_longer_side():
    tall = [(0, 0), (4, 0), (4, 10), (0, 10)]  # reading direction along the short side
    assert min_rotated_rect(tall).angle == 0.0
    assert principal_angle(tall) == -90.0  # the longer side, read downwards
    with pytest.raises(ValueError):
        principal_angle(tall, "nope")


def test_curved_polygon_uses_its_top_edge_as_reading_direction():
    top = [(0, 10), (30, 0), (60, 0), (90, 10)]
    bottom = [(90, 30), (60, 20), (30, 20), (0, 30)]
    r = min_rotated_rect(top + bottom)
    assert abs(r.angle) < 1e-9 and r.length == pytest.approx(90) and r.height == pytest.approx(30)
    flipped = min_rotated_rect(bottom + top)  # starts at the bottom right: upside down
    assert flipped.angle == pytest.approx(180.0)


def test_bow_tie_is_repaired_to_its_hull():
    poly, note = repair_polygon([(0, 0), (10, 4), (10, 0), (0, 4)])
    assert poly.is_valid and poly.area == pytest.approx(40) and "convex hull" in note


def test_self_intersecting_polygon_keeps_its_largest_piece():
    # a figure eight of two squares, 10x10 and 4x4, joined at one crossing
    pts = [(0, 0), (10, 0), (10, 10), (14, 14), (14, 10), (10, 10), (10, 14), (0, 10)]
    poly, note = repair_polygon(pts)
    assert poly.is_valid and note is not None and poly.area >= 100 - 1e-9


@pytest.mark.parametrize(
    "pts, reason",
    [
        ([(0, 0), (1, 1), (2, 2), (3, 3)], "no area"),
        ([(0, 0), (0, 0), (5, 5), (5, 5)], "distinct"),
        ([(0, 0), (math.nan, 0), (5, 5), (0, 5)], "finite"),
        ([(0, 0), (math.inf, 0), (5, 5), (0, 5)], "finite"),
        ([(0, 0), (1e12, 0), (5, 5), (0, 5)], "beyond"),
        ([(0, 0), (1,)], "(x, y)"),
        ("abc", "(x, y)"),
    ],
)
def test_unusable_polygons_are_rejected_with_a_reason(pts, reason):
    with pytest.raises(GeometryError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        min_rotated_rect(pts)


@SETTINGS
@given(polygons)
def test_any_point_list_is_repaired_or_rejected(pts):
    try:
        poly, _ = repair_polygon(pts)
    except GeometryError:
        return
    assert poly.is_valid and poly.area > 0 and not poly.interiors
    r = min_rotated_rect(pts)
    assert r.length > 0 and r.height > 0 and -180 < r.angle <= 180
    # the rectangle holds the repaired polygon and is no larger than its bounding box
    rect = Polygon(r.corners())
    assert rect.buffer(1e-6 * (1 + r.length + r.height)).contains(poly)
    minx, miny, maxx, maxy = poly.bounds
    assert rect.area <= (maxx - minx) * (maxy - miny) * (1 + 1e-9) + 1e-9


def test_rasterize_axis_aligned_rectangle_is_exact():
    y0, x0, m = rasterize_polygon([(2, 3), (7, 3), (7, 5), (2, 5)], 10, 10)
    assert (y0, x0, m.shape, int(m.sum())) == (3, 2, (2, 5), 10)
    y0, x0, m = rasterize_polygon([(-5, -5), (3, -5), (3, 2), (-5, 2)], 10, 10)  # clipped
    assert (y0, x0, int(m.sum())) == (0, 0, 6)
    assert rasterize_polygon([(20, 20), (30, 20), (30, 30)], 10, 10) is None


@SETTINGS
@given(rects, point_lists(-1e4, 1e4, 3, 8))
def test_rasterize_matches_pixel_centre_test(r, pts):
    for poly_pts in (r.corners(), [(x / 10 + 60, y / 10 + 60) for x, y in pts]):
        try:
            poly, _ = repair_polygon(poly_pts)
        except GeometryError:
            continue
        ring = list(poly.exterior.coords)[:-1]
        hit = rasterize_polygon(ring, 128, 128)
        got = np.zeros((128, 128), bool)
        if hit is not None:
            y0, x0, m = hit
            got[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        ys, xs = np.mgrid[0:128, 0:128] + 0.5
        inside = shapely.contains_xy(poly, xs, ys)
        boundary = shapely.intersects_xy(poly.exterior.buffer(1e-7), xs, ys)
        assert not ((got != inside) & ~boundary).any()


def test_mask_area_tracks_polygon_area():
    r = RotatedRect(64, 64, 90, 30, 23)
    _, _, m = rasterize_polygon(r.corners(), 128, 128)
    perimeter = 2 * (90 + 30)
    assert abs(int(m.sum()) - 90 * 30) < perimeter / 2
    assert Point(64, 64).within(Polygon(r.corners()))
