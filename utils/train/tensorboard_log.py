"""The run's TensorBoard log, which never costs the training: a write that fails mid-run (a full
log disk, a lost network folder) prints one warning, and the run trains on without logging and
saves its checkpoints as usual. At start-up, a log folder without room is a one-line error.

TensorBoard writes its events from a thread of its own, which prints a traceback of a failed
write before the main thread hears of it; that traceback is left out, the warning says it all.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from utils.full_disk import naming_full_disk
from utils.progress import write

_thread_hook: Callable[[Any], None] | None = None  # the hook that was there before ours


def _quiet_writer_thread(args: Any) -> None:
    if isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard."):
        return  # the main thread gets the same error at its next write, and warns
    assert _thread_hook is not None
    _thread_hook(args)


def _quiet_writer_threads() -> None:
    global _thread_hook
    if threading.excepthook is not _quiet_writer_thread:
        _thread_hook = threading.excepthook
        threading.excepthook = _quiet_writer_thread


class TensorBoardLog:
    """Scalars and images of a run in ``folder``; after a failed write, nothing more is written."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy (tensorboard): only rank 0 of a training run

        self.folder = folder
        _quiet_writer_threads()
        with naming_full_disk(folder, "the TensorBoard log", "free some space there or pass another --log_dir"):
            self._writer: Any = SummaryWriter(str(folder))  # writes and flushes its first record

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._write(lambda w: w.add_scalar(tag, value, step))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: (H, W, 3)."""
        self._write(lambda w: w.add_image(tag, image, step, dataformats="HWC"))

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as e:
                self._warn(e)

    def _write(self, add: Callable[[Any], None]) -> None:
        if self._writer is None:
            return
        try:
            add(self._writer)
        except OSError as e:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except OSError:
                pass  # the same failure again: one warning is enough
            self._warn(e)

    def _warn(self, error: OSError) -> None:
        write(f"warning: {self.folder}: the TensorBoard log could not be written ({error.strerror or error}); "
              "logging stopped, training goes on and saves its checkpoints", error=True)
