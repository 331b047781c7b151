"""One process at a time in a run folder: an OS lock (``utils.file_lock``) on ``<folder>/run.lock``.

The lock is ``fcntl.flock`` on a file that holds the holder's pid, host, start time and command.
The operating system drops the lock when its process ends, however it ends (a crash, ``kill
-9``, a lost node), so a lock is never stuck; a run that ends normally also empties the file.
A file that still names a holder when its lock is free is therefore the trace of a run that
was killed: the next run takes it over and says so.

``claim_folders`` is what train.py does with it before any work: every folder the run writes is
writable, the run folder is locked, and no other run's checkpoint is replaced unasked.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch

from utils.checkpoint import remove_stale_temps
from utils.cli import writable_folders
from utils.errors import UserError
from utils.file_lock import lock, open_lock_file
from utils.full_disk import DiskFull, naming_full_disk

LOCK_FILE = "run.lock"


class FolderLocked(UserError):
    """Another live process holds the folder."""


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on host, started 2024-05-01 10:00:00`` from a lock file's record."""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        text = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace").strip()
        record = json.loads(text) if text else None
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?"} if text else None
    return record if isinstance(record, dict) else None


class RunLock:
    """``with RunLock(folder, hint):`` holds ``folder`` for this process. ``hint`` ends the
    one-line refusal when another live process holds it (e.g. "pass another --name")."""

    def __init__(self, folder: str | Path, hint: str = "wait for it to end") -> None:
        self.folder, self.hint = Path(folder), hint
        self.fd: int | None = None
        self.stale: dict[str, Any] | None = None  # the record a killed holder left, when taken over

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> RunLock:
        """Take the lock or raise FolderLocked; the folder must exist and be writable."""
        fd = open_lock_file(self.path)
        try:
            locked = lock(fd, wait=False)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise FolderLocked(f"{self.folder}: another run is using this folder "
                               f"({describe_holder(holder or {})}); {self.hint}") from None
        except OSError:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            print(f"warning: {self.folder}: this file system cannot lock files, so nothing stops a second "
                  "run from using the folder at the same time", file=sys.stderr)
            return self
        self.stale = _read_record(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)}
        try:
            with naming_full_disk(self.folder, LOCK_FILE, "free some space there"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except DiskFull:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def release(self) -> None:
        """Empty the lock file (the run ended normally) and drop the lock."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)  # also for forked DataLoader workers that share the file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the folders a training run claims ----------------------------------------------------------------


def folders_to_write(args: Namespace) -> list[tuple[Path, str, str]]:
    """Every folder a training run writes, with the option that names it and what goes there: all are
    checked to be writable before any work, so a folder a new feature writes belongs here."""
    folders = []
    if args.stage in ("text", "all"):
        folders.append((Path(args.text_ckpt), "--text_ckpt", "the instruction encoder"))
    if args.stage != "text":
        folders += [(Path(args.ckpt_dir) / args.name, "--ckpt_dir or --name", "checkpoints"),
                    (Path(args.log_dir) / args.name, "--log_dir", "logs")]
        if args.text_cond == "film" and Path(args.text_ckpt).is_dir():  # a missing encoder is named later
            folders.append((Path(args.text_ckpt), "--text_ckpt with a writable copy of the encoder folder",
                            "the record of the checkpoints trained with this encoder"))
    return folders


def prepare_run_dir(args: Namespace, run_dir: Path) -> None:
    """Refuse to replace another run's checkpoints unless told to; clear half-written saves. A
    run continues in its own folder (``--resume``, or a checkpoint of that folder); resuming
    another run's checkpoint into a folder that holds one replaces it only with --overwrite."""
    existing = sorted(run_dir.glob("*.pt"))
    own = args.resume == "auto" or (args.resume is not None and Path(args.resume).resolve().parent == run_dir.resolve())
    if existing and not own and not args.overwrite:
        shown = existing[0] if (run_dir / "last.pt") not in existing else run_dir / "last.pt"
        try:
            ck = torch.load(shown, map_location="cpu", weights_only=True, mmap=True)
            what = f" (epoch {ck.get('epoch', '?')}, step {ck.get('step', '?')})"
        except Exception:  # unreadable: the refusal stands, without the detail
            what = ""
        if args.resume:
            raise UserError(f"{shown}: --resume {args.resume} continues another run, and the run named "
                            f"{args.name!r} already has a checkpoint{what} that it would replace; pass a new "
                            "--name, or replace it with --overwrite")
        raise UserError(f"{shown}: a run named {args.name!r} already has a checkpoint{what}; continue it with "
                        "--resume, start another with --name NEW, or replace it with --overwrite")
    remove_stale_temps(run_dir)


def claim_folders(args: Namespace, stack: contextlib.ExitStack) -> None:
    """Before any work (rank 0): every folder the run writes is writable, no other live run uses
    this run's folder (a lock held until ``stack`` closes), and no checkpoint is replaced unasked."""
    writable_folders(folders_to_write(args))
    if args.stage == "text":
        return
    run_dir = Path(args.ckpt_dir) / args.name
    lock = stack.enter_context(RunLock(run_dir, hint="wait for it to end, or pass another --name"))
    if lock.stale:
        print(f"note: {run_dir}: the run that held it ({describe_holder(lock.stale)}) ended without releasing it; "
              "taking it over", file=sys.stderr)
    prepare_run_dir(args, run_dir)
