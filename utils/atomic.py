"""Files and folders written whole or not at all, never over another run's.

A file is written to a temporary file in its own folder (``<name>.<random>.tmp``), flushed to disk,
and only then given its name: linked into place without replacing anything (``os.link`` fails
when the name is taken, so of two runs writing the same name at once one gets it and the other
is told), or, where replacing is what was asked (``--overwrite``, or a file that is this run's
own, such as ``last.pt``), renamed over the old one (``os.replace``). A kill, a full disk or any
error while writing leaves the old file as it was and no half-written one; the temporary file is
removed, except after ``kill -9`` (a ``*.tmp`` file, never read as a result). A folder is written
as a temporary sibling and renamed into place.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from utils.errors import UserError

TMP_SUFFIX = ".tmp"
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


class FileTaken(UserError):
    """The name was free when the run started and another run wrote it since."""


def taken(path: Path) -> FileTaken:
    return FileTaken(f"{path}: already exists (another run wrote it while this one ran); pass --overwrite to "
                     "replace it, or write elsewhere")


def _normal_mode(path: str | Path) -> None:
    """mkstemp and mkdtemp make private files; give this one the mode a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


def _publish(tmp: Path, path: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise taken(path) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        try:  # a file system without hard links: claim the name, then move the whole file onto it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise taken(path) from None
        os.replace(tmp, path)


def write_file(path: str | Path, write: Callable[[BinaryIO], None], replace: bool) -> None:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then give it the name ``path``:
    replacing a file already there only with ``replace``, else a FileTaken. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(name)
    try:
        _normal_mode(tmp)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path, replace)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, replace: bool) -> None:
    """:func:`write_file` of ``data``."""
    write_file(path, lambda f: f.write(data), replace)


def write_text(path: str | Path, text: str, replace: bool, errors: str = "strict") -> None:
    """:func:`write_file` of ``text`` in UTF-8 (``errors`` as for ``str.encode``)."""
    write_bytes(path, text.encode("utf-8", errors), replace)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` where the folder ``path`` is: the old one is renamed aside, then removed."""
    old = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".old", dir=path.parent))
    os.rename(path, old / path.name)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old / path.name, path)  # the old folder back in its place
        raise
    finally:
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def new_folder(path: str | Path, replace: bool) -> Iterator[Path]:
    """``with new_folder(path, replace) as tmp:`` fill ``tmp``, a temporary sibling of ``path``; on
    leaving the block it is renamed to ``path``. A folder already there (not empty) is replaced only
    with ``replace``, else a FileTaken; on an error ``tmp`` is removed and ``path`` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent))
    try:
        _normal_mode(tmp)
        yield tmp
        try:
            os.rename(tmp, path)  # also over an empty folder
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not replace:
                raise taken(path) from None
            _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
