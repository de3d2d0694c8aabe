"""Keep freed tensor memory from staying resident in long CPU runs (glibc's allocator).

glibc serves large allocations with ``mmap`` and unmaps them when freed, but it raises that
threshold (up to 32 MiB) whenever such a block is freed; from then on tensors of the sizes
seen so far are carved out of the heap, and a heap's freed holes stay resident. Batches of
ever new shapes (token-budget batches over a large file) then grow the resident set pass after
pass. A fixed threshold keeps every large block mapped and returned when freed: a first streamed
pass over 73,640 HH pairs (10x the shipped data) peaked at 244.5 MB above its start with glibc's
default and at 82.9 MB with a 64 KiB threshold (``python -m arena.bench only=scaling`` measures
the same pipeline at 1x / 4x / 16x)::

    fix_mmap_threshold(64 * 1024)  # once, before scoring; False where libc is not glibc
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def fix_mmap_threshold(nbytes: int | None) -> bool:
    """Serve allocations of ``nbytes`` or more with ``mmap``, fixed (no dynamic raise).

    Args:
        nbytes: Threshold in bytes; ``None`` leaves the allocator as it is.

    Returns:
        Whether the threshold was set (False with ``None``, or without glibc's ``mallopt``).
    """
    if nbytes is None:
        return False
    if nbytes <= 0:
        raise ValueError(f"malloc_mmap_threshold must be a positive number of bytes, got {nbytes}")
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("no glibc mallopt here: the allocator's mmap threshold is left as it is")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
