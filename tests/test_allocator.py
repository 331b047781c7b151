"""utils/allocator.py: after retain_freed_memory() big CPU tensors come from the heap, not
from fresh mmap'd pages, and freed memory stays in the process."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# prints mmap'd bytes while a 100 MB tensor is alive and the heap size after it is freed
PROBE = """
import ctypes, sys, torch
from utils.allocator import retain_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
if sys.argv[1] == "retain":
    assert retain_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(25 * 2**20)  # 100 MB
mapped = libc.mallinfo2().hblkhd - before
del x
print(mapped, libc.mallinfo2().arena)
"""


def probe(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_big_tensors_stay_in_the_heap_after_retain_freed_memory():
    mapped_default, _ = probe("default")
    mapped_retain, heap_retain = probe("retain")
    assert mapped_default >= 100 * 2**20  # glibc's default: a fresh mapping, unmapped on free
    assert mapped_retain == 0
    assert heap_retain >= 100 * 2**20  # freed, but kept for the next step
