"""Keep freed memory in the process: glibc malloc settings for the training loop.

Every generation allocates and frees the same tens to hundreds of MB of tensors. By
default glibc serves large blocks with fresh mmaps and gives freed heap tops back to the
OS, so the next generation page-faults the same memory in again. With every block served
from the heap and no trimming, freed blocks are reused instead. On a 2-core CPU:
- `fast` (20 s of search, validating every 10 generations): 6.0 s of kernel time and
  905 generations before; 0.7-0.8 s and 1,000-1,300 generations with the mmap threshold
  raised to its 32-MB ceiling;
- examples/alphabet-augmented.yaml (1,040 images a generation, blocks over 32 MB): 0.257
  s a generation with the threshold raised, 0.171 s with mmap off, same peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory; False (and no change) where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    heap_only = mallopt(M_MMAP_MAX, 0)  # glibc still mmaps if the heap cannot grow
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(heap_only and trim_ok)
