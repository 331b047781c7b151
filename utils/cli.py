"""How every command-line script reports problems: one line on stderr and an exit status,
never a traceback, for anything the user can fix; and the value types its options take."""
from __future__ import annotations

import argparse
import io
import math
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from utils.data.pixel_limit import OPENCV_MAX_PIXELS
from utils.errors import UserError, user_message
from utils.full_disk import is_disk_full
from utils.release.hub import HUB_ID
from utils.stop_signals import exit_code, signal_name
from utils.tasks import DEGRADATION_CHOICES, RESTORE_ORDER, TASKS, split_tasks

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (bad choices, bad values, type errors) are a UserError: one line
    naming the option, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def number(text: str, kind: type) -> int | float:
    """argparse helper: ``text`` as an int or a finite float, else an ArgumentTypeError."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
    return value


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer from ``low`` to ``high`` (no upper bound if None)."""
    def parse(text: str) -> int:
        value = number(text, int)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{text}: must be {low} or more" if high is None else f"{text}: must be from {low} to {high}")
        return value
    return parse


def float_in(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number from ``low`` (excluded when ``low_open``) to ``high``."""
    def parse(text: str) -> float:
        value = number(text, float)
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"above {low:g}" if low_open else f"{low:g} or more"
            raise argparse.ArgumentTypeError(f"{text}: must be a number {bound}"
                                             + (f" and at most {high:g}" if high is not None else ""))
        return value
    return parse


# --- value types of the options (argparse ``type=``), also used for the values of a recipe file ---
MAX_REPEAT = 1000  # visits of an image per epoch; the official recipe's largest is Rain100L x200


def task_order(text: str) -> tuple[str, ...]:
    """'dehaze,derain,denoise' -> the tasks in that order (each once)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        split_tasks("+".join(parts))
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"{text!r}: name each task once, e.g. {','.join(RESTORE_ORDER)}")
    return tuple(parts)


positive_int = int_in(1)
non_negative_int = int_in(0)
positive_float = float_in(0.0, low_open=True)
non_negative_float = float_in(0.0)


def pixel_count(text: str) -> int:
    """argparse type of ``--max_pixels``: a whole number of pixels, e.g. 300000000 or 3e8."""
    value = number(text, float)
    if value != int(value) or not 1 <= value <= OPENCV_MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number of pixels from 1 to {OPENCV_MAX_PIXELS:,} "
                                         "(OpenCV's own limit)")
    return int(value)


def run_name(text: str) -> str:
    """argparse type of ``--name``: one plain folder name (it becomes ckpt/<name>/, output/<name>/)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        raise argparse.ArgumentTypeError(f"{text!r}: holds bytes that are not UTF-8 text; use a plain name") from None
    if text.strip() in ("", ".", "..") or any(sep in text for sep in ("/", "\\", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r}: a run name is one folder name (no '/', not empty, not "
                                         "'.' or '..'), e.g. --name my_run")
    return text


def init_source(text: str) -> str:
    """argparse type of ``--init``: a release folder or checkpoint file that exists, or a Hugging Face
    Hub id (``owner/name``)."""
    if not (text.strip() and (Path(text).exists() or HUB_ID.match(text))):
        raise argparse.ArgumentTypeError(f"{text!r}: no such release folder or checkpoint, and not a Hub id "
                                         "(owner/name); pass e.g. --init release/demo")
    return text


def repeat_item(text: str) -> tuple[str, int]:
    """``"derain=120"`` -> ``("derain", 120)`` (argparse type of ``--repeat``)."""
    key, sep, val = text.partition("=")
    if not sep or key not in DEGRADATION_CHOICES or not val.isdigit() or not 1 <= int(val) <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected TASK=N with N from 1 to {MAX_REPEAT} and TASK in {', '.join(DEGRADATION_CHOICES)}")
    return key, int(val)


MAX_IDENTITY_SHARE = 0.5


def identity_share_item(text: str) -> float | tuple[str, float]:
    """argparse type of ``--identity_share``: ``"0.1"`` -> ``0.1`` (every task), ``"dehaze=0.2"`` ->
    ``("dehaze", 0.2)`` (that task); a share from 0 to MAX_IDENTITY_SHARE."""
    key, sep, val = text.rpartition("=")
    share = float_in(0.0, MAX_IDENTITY_SHARE)
    if not sep:
        return share(val)
    if key not in TASKS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected P or TASK=P with TASK in {', '.join(TASKS)}")
    return key, share(val)


def identity_shares(items: Sequence[float | tuple[str, float]]) -> dict[str, float]:
    """``--identity_share``'s values -> {task: share}: a bare share sets every task's, ``TASK=P`` that
    task's, the later value winning."""
    shares: dict[str, float] = {}
    for item in items:
        shares.update({item[0]: item[1]} if isinstance(item, tuple) else dict.fromkeys(TASKS, item))
    return shares


def worker_counts(text: str) -> list[int]:
    """argparse type of ``--num_workers``: ``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        counts = [-1]
    if any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: give worker counts like 0,1,2 (0 or more each)")
    return counts


def probe_write(folder: Path) -> None:
    """Write (and drop) a temporary file in ``folder``: an OSError when that is not possible."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def writable_folder(folder: Path, option: str, what: str = "the results") -> Path:
    """Create ``folder`` and prove a file can be written there, before any work is done; a
    UserError naming ``what`` would be written and ``option`` (the flag that chose it) otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_write(folder)
    except OSError as e:
        raise UserError(f"{folder}: cannot write {what} there ({e.strerror or e}); pass another {option}") from None
    return folder


def writable_folders(folders: Sequence[tuple[Path, str, str]]) -> None:
    """:func:`writable_folder` for each ``(folder, option, what)``, in order, each folder once: a
    script lists every folder it will write and checks them all before its first step."""
    seen: set[Path] = set()
    for folder, option, what in folders:
        key = Path(os.path.abspath(folder))
        if key not in seen:
            seen.add(key)
            writable_folder(Path(folder), option, what)


def refuse_replacing(paths: Sequence[Path], alternative: str) -> None:
    """The scripts' one rule for what they write: a file that already exists is replaced only with
    --overwrite. A UserError naming the first of ``paths`` that exists and how many do; the caller
    checks before any work, and not at all under --overwrite. ``alternative``: the other way out
    (e.g. "another --name")."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing:
        raise UserError(f"{existing[0]}: already exists ({len(existing)} of the {len(paths)} files this run would "
                        f"write exist); pass --overwrite to replace them, or {alternative}")


def _print_undecodable_names() -> Callable[[], None]:
    """Make stdout and stderr print a file name that is not UTF-8 as its own bytes (as ``ls``
    does) instead of failing on it; returns what undoes that."""
    streams = [(s, s.errors) for s in (sys.stdout, sys.stderr) if isinstance(s, io.TextIOWrapper)]
    for stream, _ in streams:
        stream.reconfigure(errors="surrogateescape")
    return lambda: [stream.reconfigure(errors=errors) for stream, errors in streams]


def cli_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)``: a UserError prints ``error: <message>`` and returns 2, Ctrl-C
    prints ``interrupted`` and returns 130, SIGTERM (``utils.stop_signals.StopRequested``) prints
    ``stopped by SIGTERM`` and returns 143."""
    restore = _print_undecodable_names()
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (OSError, RuntimeError) as e:  # a full disk where no caller named the folder
        if not is_disk_full(e):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}no space left on the device; free some space and run again", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print("interrupted" if signum == signal.SIGINT else f"stopped by {signal_name(signum)}", file=sys.stderr)
        return exit_code(signum)
    finally:
        restore()
