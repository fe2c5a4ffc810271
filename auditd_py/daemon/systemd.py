"""Talking to systemd: sd_notify(3) (READY, STATUS, WATCHDOG, …) and the watchdog period."""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

NOTIFY_TIMEOUT = 2.0
"""Seconds a notify may block (a full datagram queue must not hang the main loop)."""
DEFAULT_WATCHDOG_S = 10.0
"""How fresh the seal loop's heartbeat must be for ``WATCHDOG=1`` without $WATCHDOG_USEC."""


def _sd_notify() -> Callable[[str], bool] | None:
    """systemd-python's ``systemd.daemon.notify``, if installed.

    Imported by name: the repository's ``systemd/`` folder of unit files would
    otherwise be taken for the package by mypy.
    """
    try:
        mod: Any = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    fn = getattr(mod, "notify", None)
    return fn if callable(fn) else None


_SD_NOTIFY = _sd_notify()


def notify_socket(state: str) -> bool:
    """sd_notify(3) by hand over $NOTIFY_SOCKET (the fallback); False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(NOTIFY_TIMEOUT)  # a full queue must not hang the main loop forever
            s.sendto(state.encode(), addr)
    except OSError:
        return False
    return True


def notify(state: str) -> bool:
    """sd_notify(3): systemd-python's when importable, else :func:`notify_socket`."""
    if _SD_NOTIFY is not None:
        try:
            return bool(_SD_NOTIFY(state))
        except (OSError, ValueError):
            return False
    return notify_socket(state)


def watchdog_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog period for this process ($WATCHDOG_USEC), or None."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were forked or exec'd by it)
    return int(usec) / 1e6
