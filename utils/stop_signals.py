"""How the scripts stop on a signal: SIGINT (Ctrl-C) and SIGTERM (how SLURM, Kubernetes and
``timeout`` stop a job, before SIGKILL) stop the script cleanly, SIGUSR1 (SLURM's ``--signal``,
sent before the time limit) asks for a checkpoint and the work goes on.

``with StopSignals(note) as signals:`` catches the three in the main thread. Outside a loop that
can stop between its steps, SIGINT and SIGTERM raise :class:`StopRequested` (a KeyboardInterrupt:
what Python does on Ctrl-C) and SIGUSR1 prints ``note``. Inside ``signals.between_steps()`` they
are only recorded (``stop``, ``save_requested``) for the loop to act on at its next step boundary,
so that a step is never cut in half; a repeated signal (SLURM and torchrun may both send one) is
recorded once. The exit status of a script stopped by a signal is the shell's, 128 + the signal's
number: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP = (signal.SIGINT, signal.SIGTERM)
SAVE = signal.SIGUSR1


def exit_code(signum: int) -> int:
    """The shell's exit status of a process stopped by ``signum``: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequested(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the script cannot wait for a step boundary."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class StopSignals:
    """SIGINT, SIGTERM and SIGUSR1 for one script (see the module's docstring); the handlers that
    were there before come back when the ``with`` block ends. ``note``: the line printed on SIGUSR1
    outside ``between_steps`` (what the script keeps, and that it goes on)."""

    def __init__(self, note: str) -> None:
        self.note = note
        self.stop: int | None = None  # the first SIGINT / SIGTERM received, if any
        self.save_requested = False
        self._deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may catch signals; the process keeps its own handlers
        for signum in (*STOP, SAVE):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def between_steps(self) -> Iterator[StopSignals]:
        """Within the block, signals are recorded for the loop to act on between its steps."""
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False

    def take_save_request(self) -> bool:
        """Whether SIGUSR1 came since the last call."""
        requested, self.save_requested = self.save_requested, False
        return requested

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == SAVE:
            if self._deferring:
                self.save_requested = True
            else:  # os.write: no buffered stream that the interrupted code may be in the middle of using
                os.write(2, f"\n{signal_name(signum)}: {self.note}\n".encode())
            return
        first = self.stop is None
        if first:
            self.stop = signum
        if first and not self._deferring:
            raise StopRequested(signum)


def _leave_quietly(_signum: int, _frame: FrameType | None) -> None:
    os._exit(0)  # a worker killed by a signal is an error in the main process; one that exits with 0 is not


def ignore_in_worker(_worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: data workers leave SIGINT and SIGUSR1 to the main process (SLURM
    signals every process of a job, and SIGUSR1 would end a worker), and end quietly on SIGTERM, which
    is also how the main process ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(SAVE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave_quietly)
