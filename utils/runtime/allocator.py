"""Process-wide CPU memory setting of our entry points (train.py, test.py, demo.py, bench.py).

PyTorch hands every CPU tensor to glibc malloc, which serves blocks over 32 MB with fresh
``mmap`` pages and returns them to the kernel on ``free``: every large activation then costs
a page fault and a page zeroing per 4 KB, on every forward and backward. Keeping freed memory
in the process removes that, and makes inference and training on a CPU faster
(docs/benchmarks/cpu-speed.md#page-faults). The process then holds its peak heap until it exits,
and fragmentation can raise that peak (the same section: demo.py on a 4000x3000 photo).

The module also reads malloc's statistics (glibc ``mallinfo2``) for bench.py's peak-memory
measurement and for the tile planner, which counts the free memory kept in the heap as available.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Callable

_M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
_M_MMAP_MAX = -4


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc_function(name: str):
    """A function of the C library on Linux (glibc), or None where there is none."""
    if platform.system() != "Linux":
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _mallinfo2():
    """glibc's ``mallinfo2`` (glibc >= 2.33), or None where there is none."""
    fn = _libc_function("mallinfo2")
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


def malloc_live_bytes_fn() -> Callable[[], int] | None:
    """A function returning the bytes malloc has handed out and not got back, or None."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None

    def live() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd  # heap chunks in use + mmap'd blocks

    return live


def malloc_free_heap_bytes() -> int:
    """Bytes this process holds in malloc's heap without using them (0 where unknown):
    after ``retain_freed_memory`` the memory of earlier, bigger steps stays here, free for
    the next ones but missing from the system's MemAvailable."""
    mallinfo2 = _mallinfo2()
    return 0 if mallinfo2 is None else int(mallinfo2().fordblks)


def retain_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory: no mmap for big blocks (``M_MMAP_MAX=0``) and
    never trim the heap (``M_TRIM_THRESHOLD=-1``), like ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=-1``. Returns False where this is not glibc (nothing changes)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
