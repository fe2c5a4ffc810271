"""Signals that arrive while the daemon is still starting (importing, loading config).

``auditd-py run`` installs these handlers first thing, so that a SIGTERM sent
during start-up (systemd stopping a unit that is just starting, a test that
stops a daemon it just spawned) is not the default action, death by signal,
but a clean stop as soon as the daemon can act on it: the daemon's own handlers
replace these and replay what was caught (:func:`take`).
"""

from __future__ import annotations

import signal
from types import FrameType

CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
_pending: list[int] = []


def _catch(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def install() -> None:
    for s in CAUGHT:
        signal.signal(s, _catch)


def take() -> list[int]:
    """The signals caught so far, oldest first; forgets them."""
    out = list(_pending)
    _pending.clear()
    return out
