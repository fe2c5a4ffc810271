"""Is the seal loop alive? The watchdog ping, the STATUS= line and the stall events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from auditd_py.clock import Clock
from auditd_py.daemon.narrator import Narrator
from auditd_py.daemon.rates import Rates


class _Loop(Protocol):
    heartbeat: float

    @property
    def stats(self) -> _Stats: ...


class _Stats(Protocol):
    sealed: int
    sealed_by_source: dict[str, int]


class Health:
    """Every main-loop tick: sample the rates, ping the watchdog only while the seal loop
    makes progress, and tell once when it stalls and when it resumes.

    A stuck seal loop stops ``WATCHDOG=1`` (systemd restarts the daemon) even while
    the main loop itself is healthy.
    """

    def __init__(
        self,
        notify: Callable[[str], bool],
        say: Narrator,
        clock: Clock,
        *,
        stall_after: float,
    ) -> None:
        self.notify = notify
        self.say = say
        self.clock = clock
        self.stall_after = stall_after
        """The heartbeat must be younger than this (half the watchdog period)."""
        self.rates = Rates()
        self.stalled_since: float | None = None

    def sample(self, loop: _Loop) -> None:
        st = loop.stats
        self.rates.sample(self.clock.monotonic(), st.sealed, st.sealed_by_source)

    def tick(self, loop: _Loop, status: str) -> None:
        """Once per main-loop turn (``status``: the STATUS= line without stall news)."""
        self.sample(loop)
        now = self.clock.monotonic()
        age = now - loop.heartbeat
        if age < self.stall_after:
            if self.stalled_since is not None:
                self.say.sealer_resumed(now - self.stalled_since)
                self.stalled_since = None
            self.notify(f"WATCHDOG=1\nSTATUS={status}")
            return
        if self.stalled_since is None:
            self.stalled_since = loop.heartbeat
            self.say.sealer_stalled(age, self.stall_after)
        self.notify(f"STATUS=sealer stalled for {age:.0f}s; {status}")
