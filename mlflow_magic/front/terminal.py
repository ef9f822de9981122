"""A start's progress in a terminal: one line, rewritten in place."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TextProgress:
    """``preparing database ... 2.3 s`` on one line, rewritten in place."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.shown = False
        self.elapsed = 0.0

    def __call__(self, phase: str, elapsed: float) -> None:
        self.shown, self.elapsed = True, elapsed
        if phase == "ready":
            self.stream.write(f"\r\033[Kready in {elapsed:.1f} s\n")
        else:
            self.stream.write(f"\r\033[K{phase} ... {elapsed:4.1f} s")
        self.stream.flush()

    def fail(self) -> None:
        if self.shown:
            self.stream.write(f"\r\033[Kfailed after {self.elapsed:.1f} s\n")
            self.stream.flush()


class PushLine:
    """A push's progress on one line, rewritten in place, at most every ``every`` seconds."""

    every = 0.5

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last = 0.0

    def __call__(self, tally) -> None:
        now = time.monotonic()
        if tally.phase != "done" and now - self._last < self.every:
            return
        self._last = now
        end = "\n" if tally.phase == "done" else ""
        self.stream.write(f"\r\033[K{tally.text()}{end}")
        self.stream.flush()
