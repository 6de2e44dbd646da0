"""ICDAR 2015 protocol on hand-made cases with known answers (textboost.scoring.f1)."""

from __future__ import annotations

import pytest

from textboost.scoring.f1 import (
    SpottingCounts,
    match_image,
    transcriptions_match,
)
from textboost.text.words import Word


def evaluate_set(pairs) -> dict[str, float]:
    """Global scores over ``[(gt_words, det_words), ...]`` plus the summed counts (the
    evaluation sums the counts of its images the same way)."""
    total = SpottingCounts()
    for gt, det in pairs:
        total = total + match_image(gt, det)
    return {**total.to_dict(), **total.scores()}


def box(x0: float, y0: float, x1: float, y1: float, text: str = "w", legible: bool = True) -> Word:
    return Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), text, legible)


def test_perfect_match_gives_one():
    gt = [box(0, 0, 10, 10, "Hello"), box(20, 0, 30, 10, "world")]
    det = [box(0, 0, 10, 10, "hello"), box(20, 0, 30, 10, "World")]
    c = match_image(gt, det)
    assert c == SpottingCounts(n_gt=2, n_det=2, det_tp=2, e2e_tp=2)
    s = c.scores()
    assert s["det_f1"] == s["e2e_f1"] == 1.0


def test_iou_threshold_is_strict_half():
    gt = [box(0, 0, 10, 10)]
    # det covers x in [0, 15]: inter 100, union 150 -> IoU 0.667 (match)
    assert match_image(gt, [box(0, 0, 15, 10)]).det_tp == 1
    # det [5, 15]: inter 50, union 150 -> IoU 0.333 (no match)
    assert match_image(gt, [box(5, 0, 15, 10)]).det_tp == 0
    # det [0, 20]: inter 100, union 200 -> IoU exactly 0.5, not > 0.5
    assert match_image(gt, [box(0, 0, 20, 10)]).det_tp == 0


def test_wrong_transcription_counts_for_det_not_e2e():
    c = match_image([box(0, 0, 10, 10, "STOP")], [box(0, 0, 10, 10, "ST0P")])
    assert (c.det_tp, c.e2e_tp) == (1, 0)
    s = c.scores()
    assert s["det_f1"] == 1.0 and s["e2e_f1"] == 0.0


def test_one_to_one_matching_duplicates_are_false_positives():
    gt = [box(0, 0, 10, 10, "a")]
    det = [box(0, 0, 10, 10, "a"), box(0, 0, 10, 11, "a")]
    c = match_image(gt, det)
    assert c == SpottingCounts(n_gt=1, n_det=2, det_tp=1, e2e_tp=1)
    s = c.scores()
    assert s["det_precision"] == 0.5 and s["det_recall"] == 1.0
    assert s["det_f1"] == pytest.approx(2 / 3)


def test_greedy_order_is_ground_truth_then_detection_index():
    # det 0 overlaps both gts above threshold; gt 0 takes it first, gt 1 then takes det 1.
    gt = [box(0, 0, 10, 10, "a"), box(1, 0, 11, 10, "b")]
    det = [box(0.5, 0, 10.5, 10, "b"), box(1, 0, 11, 10, "b")]
    c = match_image(gt, det)
    assert (c.det_tp, c.e2e_tp) == (2, 1)  # gt0 "a" got det0 "b": DET hit, E2E miss


def test_dont_care_excluded_and_detections_inside_dropped():
    gt = [box(0, 0, 10, 10, "ok"), box(50, 50, 100, 70, "###", legible=False)]
    det = [
        box(0, 0, 10, 10, "ok"),
        box(55, 52, 80, 68, "blah"),  # fully inside the don't-care region: dropped
        box(90, 50, 130, 70, "zz"),  # 10/40 of its area inside: kept, a false positive
    ]
    c = match_image(gt, det)
    assert c == SpottingCounts(n_gt=1, n_det=2, det_tp=1, e2e_tp=1)


def test_illegible_flag_is_dont_care_even_without_hash_text():
    gt = [box(0, 0, 10, 10, ".", legible=False)]
    c = match_image(gt, [box(0, 0, 10, 10, "x")])
    assert c == SpottingCounts(n_gt=0, n_det=0)


def test_rotated_and_degenerate_polygons():
    diamond = Word(((5, 0), (10, 5), (5, 10), (0, 5)), "x")
    assert match_image([diamond], [diamond]).det_tp == 1
    line = Word(((0, 0), (10, 0), (20, 0), (5, 0)), "x")  # no area: ignored on both sides
    assert match_image([line], [line]) == SpottingCounts()
    bowtie = Word(((0, 0), (10, 10), (10, 0), (0, 10)), "x")  # self-intersecting: repaired
    c = match_image([bowtie], [box(0, 0, 10, 10, "x")])
    assert c.n_gt == 1 and c.n_det == 1 and c.det_tp == 0  # half the square: IoU 0.5


@pytest.mark.parametrize(
    "gt,det,ok",
    [
        ("Hello", "hello", True),
        ("Hello,", "hello", True),
        ("hello", "(Hello)", True),
        ('"Don\'t"', "don't", True),
        ("don't", "dont", False),
        ("café", "CAFÉ", True),
        ("12.5", "125", False),
        ("...", "...", True),
        ("a-b", "ab", False),
    ],
)
def test_transcription_match(gt: str, det: str, ok: bool):
    assert transcriptions_match(gt, det) is ok


def test_global_scores_accumulate_counts_not_per_image_means():
    img1 = ([box(0, 0, 10, 10, "a")], [box(0, 0, 10, 10, "a")])  # 1/1
    img2 = (
        [box(0, 0, 10, 10, str(i)) for i in range(1)]
        + [box(20 * i, 20, 20 * i + 10, 30) for i in range(9)],
        [],
    )  # 0 of 10
    res = evaluate_set([img1, img2])
    assert res["n_gt"] == 11 and res["n_det"] == 1 and res["det_tp"] == 1
    assert res["det_precision"] == 1.0
    assert res["det_recall"] == pytest.approx(1 / 11)
    assert res["det_f1"] == pytest.approx(2 * (1 / 11) / (1 + 1 / 11))


def test_empty_set_scores_zero():
    res = evaluate_set([([], [])])
    assert res["det_f1"] == 0.0 and res["e2e_f1"] == 0.0


# ---------------------------------------------------------------- word splitting (spotting)


def test_split_line_at_spaces_proportionally():
    from textboost.scoring.spotting import split_line

    words = split_line([(0, 0), (100, 0), (100, 10), (0, 10)], "ab cd efghi")  # 11 chars
    assert [w.text for w in words] == ["ab", "cd", "efghi"]
    xs = [(min(p[0] for p in w.polygon), max(p[0] for p in w.polygon)) for w in words]
    assert xs[0] == pytest.approx((0, 200 / 11))  # first word keeps the line start
    assert xs[1] == pytest.approx((300 / 11, 500 / 11))
    assert xs[2] == pytest.approx((600 / 11, 100))  # last word keeps the line end
    assert all(
        min(p[1] for p in w.polygon) == 0 and max(p[1] for p in w.polygon) == 10 for w in words
    )


def test_split_line_tall_box_reads_top_to_bottom():
    from textboost.scoring.spotting import split_line

    words = split_line([(0, 0), (10, 0), (10, 100), (0, 100)], "ab cd")
    assert [w.text for w in words] == ["ab", "cd"]
    ys = [(min(p[1] for p in w.polygon), max(p[1] for p in w.polygon)) for w in words]
    assert ys == [pytest.approx((0, 40)), pytest.approx((60, 100))]


def test_split_line_uses_character_gaps_when_spaces_are_missing():
    from textboost.scoring.spotting import split_line

    quad = [(0, 0), (100, 0), (100, 10), (0, 10)]
    # character boxes: "abc" tight, then a 20 px gap (2 line heights), then "de"
    boxes = [[(x, 0), (x + 8, 0), (x + 8, 10), (x, 10)] for x in (0, 9, 18, 46, 55)]
    assert [w.text for w in split_line(quad, "abcde", boxes)] == ["abc", "de"]
    tight = [[(x, 0), (x + 8, 0), (x + 8, 10), (x, 10)] for x in (0, 9, 18, 27, 36)]
    assert [w.text for w in split_line(quad, "abcde", tight)] == ["abcde"]


def test_split_line_rejects_bad_boxes():
    from textboost.errors import AnnotationError
    from textboost.scoring.spotting import split_line

    with pytest.raises(AnnotationError):
        split_line([(0, 0), (1, 0), (1, 1)], "abc")
    with pytest.raises(AnnotationError):
        split_line([(0, 0), (1, 0), (1, float("nan")), (0, 1)], "abc")
    assert split_line([(0, 0), (10, 0), (10, 5), (0, 5)], "   ") == []


# ---------------------------------------------------------------- RapidOCR on real images


@pytest.fixture(scope="module")
def spotter():
    from textboost.scoring.spotting import get_spotter

    return get_spotter()


def test_spotter_reads_rendered_words(spotter):
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (360, 80), (235, 230, 220))
    ImageDraw.Draw(img).text(
        (10, 20), "OPEN daily Cafe", font=ImageFont.load_default(size=28), fill=(20, 20, 30)
    )
    words = spotter.spot(img)
    assert [w.text for w in words] == ["OPEN", "daily", "Cafe"]
    lefts = [min(p[0] for p in w.polygon) for w in words]
    assert lefts == sorted(lefts)
    assert spotter.spot(img) == words  # deterministic


def test_synthetic_originals_score_high_and_blurred_copies_low(spotter):
    """Done-when check: F1 of originals is high, of strongly blurred copies low (printed)."""
    from PIL import ImageFilter

    from textboost.data.synth import synth_image

    sharp, blurred = SpottingCounts(), SpottingCounts()
    for i in range(3):
        img, words = synth_image(i, 0, max_side=384, min_side=256)
        sharp = sharp + match_image(words, spotter.spot(img))
        blurred = blurred + match_image(
            words, spotter.spot(img.filter(ImageFilter.GaussianBlur(3)))
        )
    s, b = sharp.scores(), blurred.scores()
    print(f"\noriginals: DET F1 {s['det_f1']:.3f} E2E F1 {s['e2e_f1']:.3f} ({sharp})")
    print(f"blurred:   DET F1 {b['det_f1']:.3f} E2E F1 {b['e2e_f1']:.3f} ({blurred})")
    assert s["det_f1"] >= 0.6 and s["e2e_f1"] >= 0.5
    assert b["det_f1"] <= 0.4 and b["e2e_f1"] <= 0.4
    assert s["e2e_f1"] - b["e2e_f1"] >= 0.3
