"""Signals as flags: the handlers only record what was asked; the main loop acts.

* SIGTERM/SIGINT: stop (drain, checkpoint, exit);
* SIGHUP: reload the configuration file;
* SIGUSR1: rotate the open segment.

Signals caught during start-up (:mod:`auditd_py.early`) are replayed first.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from types import FrameType

from auditd_py import early

HANDLED = early.CAUGHT


@dataclass
class Flags:
    """What the signals asked for since the main loop last looked."""

    stop: bool = False
    reload: bool = False
    rotate: bool = False
    signals: list[int] = field(default_factory=list)
    """Every signal received, in order (sealed with ``daemon.stopping``)."""

    def take(self, signum: int) -> None:
        self.signals.append(signum)
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop = True
        elif signum == signal.SIGHUP:
            self.reload = True
        elif signum == signal.SIGUSR1:
            self.rotate = True


def install(flags: Flags, wake: threading.Event) -> None:
    """Route the handled signals into ``flags`` (and wake the main loop)."""

    def on(signum: int, frame: FrameType | None) -> None:
        flags.take(signum)
        wake.set()

    for s in HANDLED:
        signal.signal(s, on)
    for caught in early.take():  # caught while starting
        on(caught, None)
