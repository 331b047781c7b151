"""A full disk is one line naming the folder (and, where known, the space needed), never a
traceback: :func:`naming_full_disk` turns the errors of a write that ran out of space into a
:class:`DiskFull`, a UserError.

A write on a full disk fails with ENOSPC (or EDQUOT, a quota reached), and PyTorch's checkpoint
writer then adds an error of its own ("enforce fail at inline_container.cc") whose context is the
ENOSPC: :func:`is_disk_full` looks along the chain of errors.
"""
from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from utils.errors import UserError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError):
    """A write failed because the file system (or the user's quota) is full."""


def is_disk_full(error: BaseException) -> bool:
    """True when ``error``, or one it was raised from or while handling, is ENOSPC / EDQUOT."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def size_text(n: float) -> str:
    """``12.3 MB``: decimal units, as ``df -H`` shows them."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(folder: Path) -> int | None:
    """The space free to this user in ``folder`` (or its nearest existing parent), None if unknown."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def disk_full_error(folder: Path, what: str, fix: str, needed: int | None = None) -> DiskFull:
    """The one line: ``<folder>: no space left on the device to write <what> (needs about N, M free); <fix>``."""
    free = free_bytes(folder)
    sizes = [f"needs about {size_text(needed)}"] if needed else []
    sizes += [f"{size_text(free)} free"] if free is not None else []
    return DiskFull(f"{folder}: no space left on the device to write {what}"
                    + (f" ({', '.join(sizes)})" if sizes else "") + f"; {fix}")


@contextlib.contextmanager
def naming_full_disk(folder: str | Path, what: str, fix: str, needed: int | None = None) -> Iterator[None]:
    """``with naming_full_disk(folder, what, fix):`` a write in the block that finds the disk full
    raises :func:`disk_full_error` instead; any other error passes unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not is_disk_full(e):
            raise
        raise disk_full_error(Path(folder), what, fix, needed) from None
