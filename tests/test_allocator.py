"""utils/runtime/allocator.py: after retain_freed_memory() big CPU tensors come from the heap, not
from fresh mmap'd pages, and freed memory stays in the process."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# prints mmap'd bytes while a 100 MB tensor is alive, then after it is freed: the heap size, the
# free bytes kept in it, and how much more memory the tile planner then counts as available
PROBE = """
import ctypes, sys, torch
from utils.runtime.allocator import malloc_free_heap_bytes, retain_freed_memory
from utils.runtime.tiling import available_memory_bytes
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
if sys.argv[1] == "retain":
    assert retain_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(25 * 2**20)  # 100 MB
mapped = libc.mallinfo2().hblkhd - before
available_in_use = available_memory_bytes()
del x
print(mapped, libc.mallinfo2().arena, malloc_free_heap_bytes(), available_memory_bytes() - available_in_use)
"""


def probe(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split()
    return [int(v) for v in out]


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_big_tensors_stay_in_the_heap_after_retain_freed_memory():
    mapped_default = probe("default")[0]
    mapped_retain, heap_retain, kept_free, planner_gain = probe("retain")
    assert mapped_default >= 100 * 2**20  # glibc's default: a fresh mapping, unmapped on free
    assert mapped_retain == 0
    assert heap_retain >= 100 * 2**20  # freed, but kept for the next step
    assert kept_free >= 100 * 2**20
    # freeing the tensor gives the tile planner its 100 MB back, although the system's
    # MemAvailable does not change (the pages stay with the process)
    assert planner_gain >= 50 * 2**20, planner_gain
