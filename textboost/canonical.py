"""Canonical JSON and its sha256: the one implementation behind every content hash.

Canonical JSON is ``json.dumps`` with sorted keys and no spaces, so the same object gives the
same bytes in every process. Shard members and the shard config hash use the UTF-8 form
(``ensure_ascii=False``); config hashes, stage keys and registry tags use the ASCII form (the
default), as they always have: switching one to the other would change every recorded hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def canonical_json(
    obj: object, *, ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None
) -> bytes:
    """Sorted keys, ``,``/``:`` separators, UTF-8 bytes; ``default`` as in ``json.dumps``."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, default=default
    )
    return text.encode()


def sha256_json(
    obj: object, *, ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None
) -> str:
    """Hex sha256 of ``canonical_json(obj)``."""
    return hashlib.sha256(
        canonical_json(obj, ensure_ascii=ensure_ascii, default=default)
    ).hexdigest()
