"""Text-spotting F1 with the ICDAR 2015 protocol (paper 5.1.3: DET and E2E F-measures).

Per image, ground-truth words and detected words (``Word`` records) are matched the way the
ICDAR 2015 Robust Reading evaluation scripts (tasks 4.1 and 4.4) do it:

1. Don't-care ground truth (``legible=False``: ICDAR ``###``, TextOCR ``.``) is excluded from
   the counts. A detection lying mostly inside one don't-care region (intersection over the
   detection's own area > 0.5) is dropped too: it counts neither as a hit nor as a false alarm.
2. Greedy one-to-one matching in the official order (ground truth by index, then detections by
   index): a pair matches when both are still free and their polygon IoU is > 0.5.
3. DET counts every match. E2E counts a match only when the transcriptions agree: compared
   case-insensitively, with punctuation at the start or end of either word tolerated
   (``"Hello,"`` matches ``"hello"``), as the official ``transcription_match`` does for ground truth.

Scores are global over a set: counts are accumulated over images first (``SpottingCounts``
adds up), then precision = tp / detections, recall = tp / ground truth,
F1 = 2PR / (P + R) (0 when a denominator is 0), as in the official script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from textboost.text.words import Word

IOU_THRESHOLD = 0.5
DONT_CARE_OVERLAP = 0.5
EDGE_PUNCTUATION = "!?.:,;*\"'()[]{}<>/\\-_·`"


@dataclass
class SpottingCounts:
    """Counts of one image or of a whole set (``+`` accumulates)."""

    n_gt: int = 0  # care ground-truth words
    n_det: int = 0  # detections left after dropping those inside don't-care regions
    det_tp: int = 0  # IoU matches
    e2e_tp: int = 0  # IoU matches whose transcriptions agree

    def __add__(self, other: SpottingCounts) -> SpottingCounts:
        return SpottingCounts(
            self.n_gt + other.n_gt,
            self.n_det + other.n_det,
            self.det_tp + other.det_tp,
            self.e2e_tp + other.e2e_tp,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def scores(self) -> dict[str, float]:
        """DET and E2E precision, recall and F1 (the official global formulas)."""
        out: dict[str, float] = {}
        for task, tp in (("det", self.det_tp), ("e2e", self.e2e_tp)):
            p, r = _ratio(tp, self.n_det), _ratio(tp, self.n_gt)
            out[f"{task}_precision"] = p
            out[f"{task}_recall"] = r
            out[f"{task}_f1"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        return out


def _ratio(num: int, den: int) -> float:
    return 0.0 if den == 0 else num / den


def to_polygon(word: Word) -> BaseGeometry | None:
    """A valid shapely polygon for a word, or ``None`` when it has no area."""
    if len(word.polygon) < 3:
        return None
    poly = Polygon(word.polygon)
    if not poly.is_valid:
        fixed = make_valid(poly)
        # keep the areal part of a repaired self-intersecting polygon
        poly = fixed if isinstance(fixed, Polygon) else fixed.buffer(0)
        if poly.is_empty or poly.geom_type not in ("Polygon", "MultiPolygon"):
            return None
    return poly if poly.area > 0 else None


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return 0.0 if union <= 0 else inter / union


def normalize_transcription(text: str) -> str:
    """Case-fold and strip edge punctuation (a word of punctuation only is kept as is)."""
    folded = text.strip().casefold()
    stripped = folded.strip(EDGE_PUNCTUATION)
    return stripped or folded


def transcriptions_match(gt: str, det: str) -> bool:
    return normalize_transcription(gt) == normalize_transcription(det)


def match_image(gt_words: Sequence[Word], det_words: Sequence[Word]) -> SpottingCounts:
    """ICDAR 2015 matching of one image's detections against its ground truth.

    Ground-truth words whose polygon has no area are treated as don't care; detections without
    area are dropped (they cannot match anything and carry no location).
    """
    care_gt: list[tuple[BaseGeometry, str]] = []
    dont_care: list[BaseGeometry] = []
    for word in gt_words:
        poly = to_polygon(word)
        if poly is None:
            continue
        if word.legible and word.text != "###":
            care_gt.append((poly, word.text))
        else:
            dont_care.append(poly)

    dets: list[tuple[BaseGeometry, str]] = []
    for word in det_words:
        poly = to_polygon(word)
        if poly is None:
            continue
        if any(poly.intersection(dc).area / poly.area > DONT_CARE_OVERLAP for dc in dont_care):
            continue
        dets.append((poly, word.text))

    counts = SpottingCounts(n_gt=len(care_gt), n_det=len(dets))
    det_taken = [False] * len(dets)
    for g_poly, g_text in care_gt:
        for j, (d_poly, d_text) in enumerate(dets):
            if det_taken[j] or not g_poly.intersects(d_poly):
                continue
            if iou(g_poly, d_poly) > IOU_THRESHOLD:
                det_taken[j] = True
                counts.det_tp += 1
                counts.e2e_tp += int(transcriptions_match(g_text, d_text))
                break
    return counts
