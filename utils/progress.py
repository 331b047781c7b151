"""Progress display: a tqdm bar on a terminal, and a plain line every few percent when the
output goes to a log file (no carriage-return updates piling up in it)."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_EVERY_PERCENT = 10


class LineProgress:
    """The part of tqdm's interface the scripts use, printing one line per ``LOG_EVERY_PERCENT``."""

    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        self.total, self.desc, self.n = max(int(total), 1), desc, initial
        self.postfix = ""
        self._next = self._threshold(initial)

    def _threshold(self, n: int) -> int:
        step = max(1, self.total * LOG_EVERY_PERCENT // 100)
        return (n // step + 1) * step

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next or self.n == self.total:
            self._next = self._threshold(self.n)
            extra = f", {self.postfix}" if self.postfix else ""
            self.postfix = ""  # shown once: a later line without new values does not repeat stale ones
            print(f"{self.desc}: {self.n}/{self.total} ({100 * self.n // self.total}%){extra}", flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, enabled: bool = True, initial: int = 0, leave: bool = True):
    """A progress reporter over ``total`` steps: tqdm on a terminal, lines in a log, or nothing."""
    if not enabled:
        return NoProgress()
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=leave)
    return LineProgress(total, desc, initial)


def write(message: str, error: bool = False) -> None:
    """Print a line without breaking a progress bar on screen."""
    tqdm.write(message, file=sys.stderr if error else sys.stdout)
