"""Progress reporting for long work. Writers call :meth:`Progress.advance` with bytes done;
the CLI shows a bar on a terminal, the Python API reports nothing unless asked."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Does nothing; the interface writers use."""

    def start(self, total: int, label: str = "") -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class TerminalProgress(Progress):
    """A one-line bar on a terminal stream, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self.total = self.done = 0
        self.label = ""
        self._last = 0.0
        self._started = 0.0

    def start(self, total: int, label: str = "") -> None:
        self.total, self.done, self.label = max(total, 1), 0, label
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, amount: int) -> None:
        self.done += amount
        self._draw()

    def finish(self) -> None:
        if self._started:
            self.done = self.total
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._started = 0.0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * self.width)
        mb = self.done / 1e6
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {frac:4.0%} {mb:8.1f} MB")
        self.stream.flush()
