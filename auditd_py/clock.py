"""Injected time: nothing in the daemon or the sealing code reads a clock itself.

Two readings: the wall clock (``now_ns``: what records and checkpoints say) and
the monotonic clock (``monotonic``: intervals, deadlines, heartbeats, rates),
so that tests can move either without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, UTC nanoseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (for tests and replays); both readings move."""

    def __init__(self, start_ns: int = 1_764_133_565_000_000_000) -> None:
        self.t = start_ns
        self.mono = 1000.0

    def now_ns(self) -> int:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1_000_000_000)
        self.mono += seconds
