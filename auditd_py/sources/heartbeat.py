"""A source thread's heartbeat: when it last made progress, and whether it is stuck.

The thread beats on every step (a file read, a scan, a wait for room in the
queue, an idle wake-up); one that has not beaten for ``stuck_after`` seconds is
stuck (a read that never returns): its source reports unhealthy, ``/health``
says 503 and the daemon seals a ``source.error`` once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from auditd_py.clock import Clock

STUCK_AFTER = 10.0
"""Seconds without a beat after which a source thread is stuck (at least)."""


class Heartbeat:
    def __init__(self, clock: Clock, stuck_after: float = STUCK_AFTER) -> None:
        self.clock = clock
        self.stuck_after = stuck_after
        self.at = clock.monotonic()

    def beat(self) -> None:
        self.at = self.clock.monotonic()

    def stuck_for(self) -> float | None:
        """Seconds since the last beat, if that makes the thread stuck; else None."""
        age = self.clock.monotonic() - self.at
        return age if age >= self.stuck_after else None


@runtime_checkable
class Beating(Protocol):
    """A source with a thread whose heartbeat the daemon watches."""

    name: str
    heartbeat: Heartbeat
