"""The ``Word`` record shared by readers, filter, side-info codec and renderer (paper 4.1)."""

from __future__ import annotations

from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Word:
    """One OCR word: polygon (>= 4 points, pixel coordinates of its image), text, legibility.

    TextOCR marks illegible words with ``"."``, ICDAR 2015 with ``"###"``; readers turn both
    into ``legible=False``.
    """

    polygon: tuple[Point, ...]
    text: str
    legible: bool = True

    def to_json(self) -> dict:
        return {
            "points": [[float(x), float(y)] for x, y in self.polygon],
            "text": self.text,
            "legible": self.legible,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Word:
        return cls(
            polygon=tuple((float(x), float(y)) for x, y in obj["points"]),
            text=str(obj["text"]),
            legible=bool(obj.get("legible", True)),
        )
