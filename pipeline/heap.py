"""Steady glibc heap settings for shard tasks (same page-fault cost on every sample)."""

from __future__ import annotations

import ctypes
import functools

# glibc serves allocations above a *dynamic* threshold (128 KiB at start) with fresh mmaps.
# Each sample allocates a few MiB of such buffers (decoded image, guidance map, PNG rows);
# whether the threshold has grown past them depends on the process's history, so a task
# paid ~700 page faults per sample or almost none, and ran 10-25 % slower or not. A fixed
# threshold keeps the buffers in the heap (and pins the threshold: no more drift).
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic value on 64-bit
TRIM_THRESHOLD = 128 << 20  # free heap kept before returning memory to the OS


@functools.cache
def steady_heap() -> bool:
    """Fix glibc's mmap/trim thresholds in this process, once; False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no glibc: macOS, Windows
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD)
    )
