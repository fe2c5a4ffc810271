"""Records per second over a sliding window, for STATUS=, /health and /metrics."""

from __future__ import annotations

import threading
from collections import deque

RATE_WINDOW = 10.0
"""Seconds over which records/s are computed (from samples taken by the main loop)."""


class Rates:
    """Records sealed per second over a sliding window, sampled once per main-loop tick."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, dict[str, int]]] = deque()
        self._lock = threading.Lock()

    def sample(self, now: float, total: int, by_source: dict[str, int]) -> None:
        with self._lock:
            self._samples.append((now, total, dict(by_source)))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()

    def rates(self) -> tuple[float | None, dict[str, float]]:
        """(records/s in all, per source); None before two samples exist."""
        with self._lock:
            if len(self._samples) < 2:
                return None, {}
            (t0, n0, by0), (t1, n1, by1) = self._samples[0], self._samples[-1]
        dt = t1 - t0
        if dt <= 0:
            return None, {}
        return (n1 - n0) / dt, {k: (v - by0.get(k, 0)) / dt for k, v in by1.items()}
