"""The checks every config section runs in its ``__post_init__``: a value among the allowed
ones, a finite number in range; the ``ConfigError`` names the dotted key and what is allowed."""

from __future__ import annotations

import math
from typing import Any

from textboost.errors import ConfigError


def check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")


def check_range(
    key: str, value: Any, low: float | None = None, high: float | None = None,
    exclusive_low: bool = False,
) -> None:  # fmt: skip
    """``ConfigError`` unless ``value`` is a finite number in the range (named in the message)."""
    if exclusive_low:
        allowed = f"a finite number > {low:g}"
    elif high is None:
        allowed = f">= {low:g}"
    else:
        allowed = f"{low:g}..{high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} is not a number; allowed: {allowed}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a finite number; allowed: {allowed}")
    too_low = low is not None and (value <= low if exclusive_low else value < low)
    if too_low or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")
