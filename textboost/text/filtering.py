"""Average-character-area filter: which OCR words travel as side info (paper 4.1, 5.1.4).

Large text survives ultra-low-bitrate compression on its own; only small text needs help.
A word is kept when it is legible, has characters, has a usable polygon and

    avg_char_area = polygon area / number of characters <= T

with ``T_train = 150`` at training-crop resolution and ``T_test = 800`` on full-resolution
images (``FilterConfig``). Like a datatrove filter, each decision is ``(True, None)`` or
``(False, reason)``; dropped words are returned with their reason so jobs can record them.
"""

from __future__ import annotations

from collections.abc import Iterable

from textboost.errors import ConfigError, GeometryError
from textboost.text.geometry import repair_polygon
from textboost.text.words import Word


def num_chars(text: str) -> int:
    """Characters that take space in the box: everything but whitespace."""
    return sum(1 for ch in text if not ch.isspace())


def avg_char_area(word: Word) -> float:
    """Polygon area / number of characters, in px^2 (inf for a word without characters).

    Raises ``GeometryError`` when the polygon cannot be repaired.
    """
    area = repair_polygon(word.polygon)[0].area
    n = num_chars(word.text)
    return float(area) / n if n else float("inf")


def keep_word(word: Word, t: float) -> tuple[bool, str | None]:
    """``(True, None)`` for a word the side info carries, else ``(False, reason)``."""
    if not word.legible:
        return False, "illegible"
    if num_chars(word.text) == 0:
        return False, "no characters"
    try:
        area = avg_char_area(word)
    except GeometryError as exc:
        return False, f"invalid geometry: {exc}"
    if area > t:
        return False, f"avg char area {area:.1f} > T={t:g}"
    return True, None


REASON_KINDS = ("illegible", "no characters", "invalid geometry", "avg char area")


def reason_kind(reason: str) -> str:
    """The kind of a drop reason, without its numbers (for counting rejects)."""
    kind = next((k for k in REASON_KINDS if reason.startswith(k)), reason)
    return "avg char area > T" if kind == "avg char area" else kind


def repaired(word: Word) -> Word:
    """The word with its polygon repaired when it was invalid (unchanged otherwise)."""
    poly, note = repair_polygon(word.polygon)
    if note is None:
        return word
    coords = tuple((float(x), float(y)) for x, y in list(poly.exterior.coords)[:-1])
    return Word(coords, word.text, word.legible)


def filter_words(words: Iterable[Word], t: float) -> tuple[list[Word], list[tuple[Word, str]]]:
    """Split words into ``(kept, [(dropped word, reason), ...])``; order is preserved.

    Kept words with a self-intersecting polygon come back repaired (shapely).
    """
    if not t > 0:
        raise ConfigError(f"filter threshold must be > 0 (data.filter.t_train / t_test), got {t!r}")
    kept: list[Word] = []
    dropped: list[tuple[Word, str]] = []
    for word in words:
        ok, reason = keep_word(word, t)
        if ok:
            kept.append(repaired(word))
        else:
            dropped.append((word, reason or "dropped"))
    return kept, dropped
