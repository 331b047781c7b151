"""An OS lock on a file (``fcntl.flock``), for runs that share a folder: train.py's run lock
(``utils.train.run_lock``) and test.py's merge of results under one ``--name``. The operating
system drops the lock when its process ends, however it ends, so a lock is never stuck."""
from __future__ import annotations

import errno
import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_NO_LOCKS = (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP)  # a file system that cannot lock files


def open_lock_file(path: str | Path) -> int:
    """A descriptor of ``path``, created if missing (the folder must exist)."""
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def lock(fd: int, wait: bool) -> bool:
    """Take the exclusive lock of ``fd``, waiting for it with ``wait``, else a BlockingIOError when
    another process holds it. False on a file system that cannot lock files (nothing is held)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as e:
        if e.errno in _NO_LOCKS:
            return False
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(e.errno, e.strerror) from None
        raise
    return True


@contextmanager
def held(path: str | Path, what: str) -> Iterator[None]:
    """``with held(path, what):`` one process at a time runs the block, the others wait their turn.
    ``what`` names what the lock protects, for the warning on a file system without locks."""
    fd = open_lock_file(path)
    try:
        if not lock(fd, wait=True):
            print(f"warning: {path}: this file system cannot lock files, so two runs writing {what} at the "
                  "same time may lose one's", file=sys.stderr)
        yield
    finally:
        os.close(fd)
