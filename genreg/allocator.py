"""Keep freed memory in the process: glibc malloc settings for the training loop.

Every generation allocates and frees the same tens to hundreds of MB of tensors. By
default glibc serves large blocks with fresh mmaps and gives freed heap tops back to the
OS, so the next generation page-faults the same memory in again. With every block served
from the heap and no trimming, freed blocks are reused instead. On a 2-core CPU:
- `fast` (20 s of search, validating every 10 generations): 6.0 s of kernel time and
  905 generations by default; 0.57-0.72 s and 955-1,387 generations (three runs) with
  these settings;
- examples/alphabet-augmented.yaml (1,040 images a generation, blocks over the 32-MB
  ceiling of glibc's mmap threshold): 0.257 s a generation with only that threshold
  raised, 0.175 s with mmap off, as here.
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
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    heap_only = mallopt(M_MMAP_MAX, 0)  # glibc still mmaps if the heap cannot grow
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(heap_only and trim_ok)
