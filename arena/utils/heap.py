"""Keep freed memory from staying resident in long streamed CPU runs.

glibc serves large allocations with ``mmap`` and unmaps them when freed, but it raises that
threshold (up to 32 MiB) whenever such a block is freed; from then on tensors of the sizes
seen so far are carved out of the heap, and a heap's freed holes stay resident. Batches of
ever new shapes (token-budget batches over a large file) then grow the resident set chunk after
chunk. Arrow's default pool (mimalloc) likewise keeps the buffers of chunks already read, and the
parquet reader keeps using the pool it started with, so ``import arena`` puts Arrow on the system
allocator through ``ARROW_DEFAULT_MEMORY_POOL`` before pyarrow loads (``arena/__init__.py``).
:func:`return_freed_memory` fixes the glibc threshold (and moves Arrow's later allocations to the
system allocator where pyarrow was imported first), so what a chunk frees leaves the process
(measured by ``python -m arena.bench only=scaling``; numbers in docs/results).

    return_freed_memory(64 * 1024)  # once, before reading; False where libc is not glibc
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import pyarrow as pa

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def return_freed_memory(mmap_threshold: int | None) -> bool:
    """Serve allocations of ``mmap_threshold`` bytes or more with ``mmap`` (a fixed threshold)
    and Arrow's through the same allocator.

    Args:
        mmap_threshold: Threshold in bytes; ``None`` leaves the allocators as they are.

    Returns:
        Whether glibc took the threshold (False with ``None`` or without glibc's ``mallopt``).

    Raises:
        ValueError: A threshold that is not a positive number of bytes.
    """
    if mmap_threshold is None:
        return False
    if mmap_threshold <= 0:
        raise ValueError(
            f"malloc_mmap_threshold must be a positive number of bytes, got {mmap_threshold}"
        )
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("no glibc mallopt here: the allocators are left as they are")
        return False
    pa.set_memory_pool(pa.system_memory_pool())
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
