"""One thread per forwarder: step, back off on failure, never give up, never drop.

The runner calls :meth:`Forwarder.step` in a loop. A :class:`ForwardError`
(the peer is down, a handshake failed, a request was refused) is retried
forever with capped exponential backoff and full jitter; the first failure of
an outage and the recovery are meta-logged (sealed), the attempts in between
are counted, not logged, so an hour-long outage does not flood the archive.
The cursor only moves inside ``step`` after the peer acknowledged, so a
failure loses nothing and a retry may only duplicate.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from auditd_py import events as ev
from auditd_py.contracts import Forwarder, Meta
from auditd_py.errors import ForwardError

BACKOFF_BASE_S = 0.25


def backoff(attempt: int, cap_s: float, rng: random.Random) -> float:
    """Full jitter (uniform in [0, min(cap, base·2^attempt)]), at least 50 ms."""
    ceiling = min(cap_s, BACKOFF_BASE_S * (2 ** min(attempt, 30)))
    return max(0.05, rng.uniform(0, ceiling))


@dataclass
class RunnerStats:
    delivered: int = 0
    failures: int = 0
    outages: int = 0
    last_error: str | None = None
    failing_since: float | None = None
    """time.monotonic() of the first failure of the current outage."""
    last_success: float | None = None


class Runner:
    def __init__(
        self,
        fwd: Forwarder,
        meta: Meta,
        *,
        retry_max_s: float,
        idle_s: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.fwd = fwd
        self.meta = meta
        self.retry_max_s = retry_max_s
        self.idle_s = idle_s
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.stats = RunnerStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._steps = 0
        self._idle_step = 0
        """The number of the last step that found nothing to send."""
        self._thread = threading.Thread(
            target=self._run, name=f"auditd-forward-{fwd.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._steps += 1
            step = self._steps
            try:
                n = self.fwd.step()
            except ForwardError as exc:
                self._failed(exc.message, attempt)
                attempt += 1
                self._sleep(backoff(attempt, self.retry_max_s, self.rng))
                continue
            except Exception as exc:  # a bug must not stop forwarding for good
                self._failed(f"{type(exc).__name__}: {exc}", attempt, bug=True)
                attempt += 1
                self._sleep(backoff(attempt, self.retry_max_s, self.rng))
                continue
            attempt = 0
            self._recovered()
            self.stats.delivered += n
            self.stats.last_success = time.monotonic()
            if n == 0:
                self._idle_step = step
                self._sleep(self.idle_s)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _failed(self, why: str, attempt: int, *, bug: bool = False) -> None:
        st = self.stats
        st.failures += 1
        st.last_error = why
        if st.failing_since is None:
            st.failing_since = time.monotonic()
            st.outages += 1
            self.meta.event(
                ev.ERROR if bug else ev.FORWARD_FAILED,
                f"forwarding to {self.fwd.name} ({self.fwd.kind}) failed: {why}; "
                "sealing goes on locally, retrying with backoff",
                target=self.fwd.name,
                kind=self.fwd.kind,
                error=why,
            )

    def _recovered(self) -> None:
        st = self.stats
        if st.failing_since is None:
            return
        down = time.monotonic() - st.failing_since
        st.failing_since = None
        self.meta.event(
            ev.FORWARD_RECOVERED,
            f"forwarding to {self.fwd.name} works again after {down:.1f}s; catching up",
            target=self.fwd.name,
            kind=self.fwd.kind,
            outage_ms=int(down * 1000),
            lag=self.fwd.lag(),
        )

    def drain(self, timeout: float) -> bool:
        """Wait until a step finds nothing left to send (or the peer fails, or timeout)."""
        begun = self._steps  # a step already under way may not see the newest records
        self.wake()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.stats.failing_since is not None:
                return False
            if self._idle_step > begun:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.fwd.close()
