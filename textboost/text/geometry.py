"""Text-box geometry for the rendering-and-alignment module (paper 4.1).

Pure functions over point sequences (pixel coordinates, x right, y down; pixel ``(i, j)``
covers ``[i, i+1) x [j, j+1)``, its centre is ``(i + 0.5, j + 0.5)``):

* ``repair_polygon``: validate a text box and repair it with shapely (a self-intersecting
  quadrilateral becomes its convex hull, any other invalid ring the largest piece of
  ``make_valid``) or reject it with ``GeometryError`` naming the reason.
* ``min_rotated_rect``: the minimal rotated rectangle, oriented along the annotation's reading
  direction (TextOCR, ICDAR 2015 and RapidOCR list the top-left corner first and go along
  the top edge), so upside-down and vertical text keep their orientation.
* ``principal_angle``: the paper's in-plane angle: the longer side of the minimal rectangle,
  or a least-squares baseline through the vertices.
* ``rasterize_polygon``: exact pixel-centre scan conversion (for the text mask of L_gc).

Angles are in degrees, counter-clockwise as seen on screen, in ``(-180, 180]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

from textboost.errors import GeometryError

MIN_AREA = 1e-2  # px^2: anything smaller is a degenerate box
MAX_COORD = 1e7  # px: beyond this a coordinate is an annotation error, not an image

Points = Sequence[Sequence[float]]


@dataclass(frozen=True)
class RotatedRect:
    """A rectangle of ``length`` along the reading direction ``angle`` and ``height`` across.

    ``u = (cos a, -sin a)`` is the reading direction in image coordinates and
    ``v = (sin a, cos a)`` points from the top of the text to its bottom.
    """

    cx: float
    cy: float
    length: float
    height: float
    angle: float

    def axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        a = math.radians(self.angle)
        c, s = math.cos(a), math.sin(a)
        return (c, -s), (s, c)

    def corners(self) -> tuple[tuple[float, float], ...]:
        """Top-left, top-right, bottom-right, bottom-left (reading order)."""
        (ux, uy), (vx, vy) = self.axes()
        hl, hh = self.length / 2, self.height / 2
        return tuple(
            (self.cx + su * hl * ux + sv * hh * vx, self.cy + su * hl * uy + sv * hh * vy)
            for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        )


def _as_array(points: Points) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"polygon is not a sequence of (x, y) numbers: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GeometryError(f"polygon must be a sequence of (x, y) points, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise GeometryError("polygon has a non-finite coordinate (nan or inf)")
    if arr.size and np.abs(arr).max() > MAX_COORD:
        raise GeometryError(f"polygon has a coordinate beyond +-{MAX_COORD:g} px")
    return arr


def _as_points(points: Points) -> list[tuple[float, float]]:
    """Validated points as Python floats (the fast path of every function here)."""
    try:
        pts = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"polygon is not a sequence of (x, y) numbers: {exc}") from None
    for x, y in pts:
        if not (abs(x) <= MAX_COORD and abs(y) <= MAX_COORD):  # also catches nan
            raise GeometryError(
                f"polygon coordinate ({x}, {y}) is not finite or beyond +-{MAX_COORD:g} px"
            )
    return pts


def _convex_quad_area(pts: list[tuple[float, float]]) -> float | None:
    """Area of a strictly convex quadrilateral, None for anything else (shapely decides)."""
    if len(pts) != 4:
        return None
    sign = 0.0
    for i in range(4):
        (ax, ay), (bx, by), (cx, cy) = pts[i], pts[(i + 1) % 4], pts[(i + 2) % 4]
        z = (bx - ax) * (cy - by) - (by - ay) * (cx - bx)
        if z == 0.0 or z * sign < 0.0:
            return None
        sign = z
    area = 0.5 * abs(sum(pts[i][0] * pts[i - 3][1] - pts[i - 3][0] * pts[i][1] for i in range(4)))
    return area if area >= MIN_AREA else None


def _largest_polygon(geom) -> Polygon | None:
    parts = []
    for g in getattr(geom, "geoms", [geom]):
        if isinstance(g, Polygon) and not g.is_empty:
            parts.append(g)
        elif hasattr(g, "geoms"):  # nested collections from make_valid
            inner = _largest_polygon(g)
            if inner is not None:
                parts.append(inner)
    return max(parts, key=lambda p: p.area) if parts else None


def repair_polygon(points: Points) -> tuple[Polygon, str | None]:
    """Return ``(valid shapely polygon without holes, repair note or None)``.

    Raises ``GeometryError`` (with the reason) for fewer than 3 distinct points, non-finite
    coordinates or a box without area.
    """
    pts = _as_points(points)
    if _convex_quad_area(pts) is not None:
        return Polygon(pts), None
    if len(set(pts)) < 3:
        raise GeometryError(f"polygon needs >= 3 distinct points, got {len(pts)} points")
    poly = Polygon(pts)
    note = None
    if not poly.is_valid:
        if len(pts) == 4:  # the usual annotation slip: two corners swapped (a bow tie)
            poly, note = shapely.convex_hull(poly), "convex hull of self-intersecting quadrilateral"
        else:
            repaired = _largest_polygon(shapely.make_valid(poly))
            if repaired is None:
                raise GeometryError("invalid polygon with no area left after make_valid")
            poly, note = repaired, "largest piece of make_valid"
    if not isinstance(poly, Polygon) or poly.area < MIN_AREA:
        raise GeometryError(f"polygon has no area (area {poly.area:.3g} px^2 < {MIN_AREA})")
    if poly.interiors:
        poly, note = Polygon(poly.exterior), note or "holes removed"
    return poly, note


def _hull(points: Points) -> list[tuple[float, float]]:
    pts = _as_points(points)
    if _convex_quad_area(pts) is not None:
        return pts
    poly, _ = repair_polygon(pts)
    return list(shapely.convex_hull(poly).exterior.coords)[:-1]


def reading_hint(points: Points) -> tuple[float, float] | None:
    """Reading direction given by the vertex order: first point to the end of the top edge.

    Annotations list the top-left corner first and walk along the top edge, so for ``n``
    points the top edge ends at point ``n // 2 - 1`` (point 1 of a quadrilateral).
    """
    pts = _as_points(points)
    if len(pts) < 3:
        return None
    end = max(1, len(pts) // 2 - 1)
    dx, dy = pts[end][0] - pts[0][0], pts[end][1] - pts[0][1]
    if math.hypot(dx, dy) < 1e-9:
        return None
    return dx, dy


def normalize_angle(a: float) -> float:
    """Map any angle (degrees) into (-180, 180]."""
    a = math.fmod(a, 360.0)
    if a <= -180.0:
        a += 360.0
    elif a > 180.0:
        a -= 360.0
    return a + 0.0


def _angle_of(dx: float, dy: float) -> float:
    """Screen angle (counter-clockwise, degrees, in (-180, 180]) of an image-space vector."""
    a = math.degrees(math.atan2(-dy, dx)) + 0.0  # + 0.0: no negative zero
    return 180.0 if a <= -180.0 else a


def _orient(dx: float, dy: float, hint: tuple[float, float] | None) -> float:
    """Angle of ``(dx, dy)`` or its opposite: the one agreeing with the hint (else (-90, 90])."""
    if hint is None:
        a = _angle_of(dx, dy)
        return a - 180.0 if a > 90.0 else a + 180.0 if a <= -90.0 else a
    if dx * hint[0] + dy * hint[1] < 0:
        dx, dy = -dx, -dy
    return _angle_of(dx, dy)


def _calipers(hull: list[tuple[float, float]]) -> tuple[float, ...]:
    """Minimum-area rectangle of a convex hull: one side lies on a hull edge.

    Returns ``(cx, cy, ux, uy, extent along u, extent along the normal (-uy, ux))``.
    """
    best: tuple[float, ...] | None = None
    n = len(hull)
    for i in range(n):
        dx, dy = hull[(i + 1) % n][0] - hull[i][0], hull[(i + 1) % n][1] - hull[i][1]
        norm = math.hypot(dx, dy)
        if norm < 1e-12:
            continue
        ux, uy = dx / norm, dy / norm
        s = [x * ux + y * uy for x, y in hull]
        t = [y * ux - x * uy for x, y in hull]
        s0, s1, t0, t1 = min(s), max(s), min(t), max(t)
        area = (s1 - s0) * (t1 - t0)
        if best is None or area < best[0]:
            sm, tm = (s0 + s1) / 2, (t0 + t1) / 2
            best = (area, sm * ux - tm * uy, sm * uy + tm * ux, ux, uy, s1 - s0, t1 - t0)
    if best is None:
        raise GeometryError("polygon has no area")
    return best[1:]


def min_rotated_rect(points: Points) -> RotatedRect:
    """Minimal rotated rectangle, ``length`` along the side closest to the reading hint.

    Without a hint (degenerate vertex order) the longer side is the reading direction.
    """
    cx, cy, ux, uy, ext_u, ext_n = _calipers(_hull(points))
    hint = reading_hint(points)
    if hint is None:
        along_u = ext_u >= ext_n
    else:
        along_u = abs(ux * hint[0] + uy * hint[1]) >= abs(-uy * hint[0] + ux * hint[1])
    if along_u:
        return RotatedRect(cx, cy, ext_u, ext_n, _orient(ux, uy, hint))
    return RotatedRect(cx, cy, ext_n, ext_u, _orient(-uy, ux, hint))


def principal_angle(points: Points, method: str = "edge") -> float:
    """The paper's in-plane angle θ of a text box (4.1), oriented by the reading hint.

    ``edge``: the longer side of the minimal rotated rectangle; ``lsq``: the total
    least-squares line through the vertices (the principal axis of their spread).
    """
    hint = reading_hint(points)
    if method == "edge":
        r = min_rotated_rect(points)
        # a box taller than long along its reading direction: text read downwards
        return r.angle if r.length >= r.height else normalize_angle(r.angle - 90.0)
    if method == "lsq":
        repair_polygon(points)  # same validation as "edge"
        arr = _as_array(points)
        _, _, vt = np.linalg.svd(arr - arr.mean(axis=0), full_matrices=False)
        return _orient(float(vt[0][0]), float(vt[0][1]), hint)
    raise ValueError(f"unknown method {method!r}; use 'edge' or 'lsq'")


def rasterize_polygon(
    points: Points, height: int, width: int
) -> tuple[int, int, np.ndarray] | None:
    """Pixels whose centre lies inside the polygon (even-odd rule), clipped to the image.

    Returns ``(y0, x0, mask)`` with ``mask`` a bool array of the clipped bounding box, or
    None when no pixel centre is covered.
    """
    arr = _as_array(points)
    x0 = max(0, math.floor(arr[:, 0].min()))
    x1 = min(width, math.ceil(arr[:, 0].max()))
    y0 = max(0, math.floor(arr[:, 1].min()))
    y1 = min(height, math.ceil(arr[:, 1].max()))
    if x1 <= x0 or y1 <= y0:
        return None
    ys = np.arange(y0, y1) + 0.5  # row centres, (R,)
    a, b = arr, np.roll(arr, -1, axis=0)  # edges a -> b, (E, 2)
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    crosses = (ys[:, None] >= lo[None]) & (ys[:, None] < hi[None])  # (R, E)
    dy = np.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])
    with np.errstate(over="ignore", invalid="ignore"):  # only crossing edges are kept
        t = (ys[:, None] - a[None, :, 1]) / dy[None]  # in [0, 1) where the edge is crossed
        xs = a[None, :, 0] + t * (b[:, 0] - a[:, 0])[None]
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)  # crossings left to right, (R, E)
    # a span [xa, xb) holds pixel i when its centre i + 0.5 does: ceil(xa - .5) <= i < ceil(xb - .5)
    cols = np.ceil(xs - 0.5)
    grid = np.arange(x0, x1, dtype=np.float64)[None]  # (1, C)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for k in range(0, xs.shape[1] - 1, 2):
        if not np.isfinite(xs[:, k + 1]).any():
            break
        mask |= (grid >= cols[:, k : k + 1]) & (grid < cols[:, k + 1 : k + 2])
    if not mask.any():
        return None
    return y0, x0, mask
