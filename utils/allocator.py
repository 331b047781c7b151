"""Process-wide CPU memory setting of our entry points (train.py, test.py, demo.py, bench.py).

PyTorch hands every CPU tensor to glibc malloc, which serves blocks over 32 MB with fresh
``mmap`` pages and returns them to the kernel on ``free``: every large activation then costs
a page fault and a page zeroing per 4 KB, on every forward and backward. Keeping freed memory
in the process removes that; on 2 CPU cores it makes paper-size inference at 256² 1.5x and a
training step 1.7x faster (BENCHMARKS.md, "Page faults"). Peak memory is unchanged; the
process just does not give memory back to the system before it exits.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
_M_MMAP_MAX = -4


def retain_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory: no mmap for big blocks (``M_MMAP_MAX=0``) and
    never trim the heap (``M_TRIM_THRESHOLD=-1``), like ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=-1``. Returns False where this is not glibc (nothing changes)."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False
