"""``auditd-py status`` for people: the snapshot's lines under a ``systemctl status``
header, in colour on a terminal, once or again and again (``--watch``).

The lines themselves are :meth:`~auditd_py.daemon.status.Snapshot.lines` (one
snapshot, many views); this module adds the header (a green or red ``●``, the
state, pid, uptime, version) and colours words that matter: ``ok`` green,
``UNHEALTHY``, ``DOWN`` and problems red, disk trouble yellow. Colour follows
the terminal and ``NO_COLOR`` (https://no-color.org). Like the snapshot, it
imports nothing of the daemon: the CLI uses it without starting one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import IO, Any

from auditd_py.daemon.status import Snapshot
from auditd_py.errors import AuditdError

GREEN, RED, YELLOW, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
CLEAR = "\x1b[H\x1b[2J"
"""Cursor home and clear screen, between two ``--watch`` frames on a terminal."""
_WORDS = re.compile(r"\b(ok|UNHEALTHY|DOWN)\b|^(\s*problem:)|^(\s*disk:)")


def use_color(terminal: bool, env: Mapping[str, str]) -> bool:
    return terminal and "NO_COLOR" not in env and env.get("TERM", "") != "dumb"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "min"), (s % 60, "s")]
    shown = [f"{n}{u}" for n, u in parts if n][:2]
    return " ".join(shown) or "0s"


def _paint(line: str) -> str:
    def one(m: re.Match[str]) -> str:
        word = m.group(0)
        color = GREEN if word == "ok" else YELLOW if m.group(3) else RED
        return f"{color}{word}{RESET}"

    return _WORDS.sub(one, line)


def render(snap: Snapshot, url: str, healthy: bool, color: bool) -> list[str]:
    """The status as lines: a ``systemctl status``-like header, then the snapshot's lines."""
    state = "healthy" if healthy else "UNHEALTHY"
    dot = "●"
    if color:
        dot = f"{GREEN if healthy else RED}●{RESET}"
        state = f"{GREEN}{state}{RESET}" if healthy else f"{BOLD}{RED}{state}{RESET}"
    head = (
        f"{dot} auditd-py {state} (pid {snap.pid}, up {_span(snap.uptime_seconds)}, "
        f"version {snap.version or '-'}) at {url}"
    )
    body = snap.lines(url)[1:]
    return [head, *([_paint(x) for x in body] if color else body)]


Fetch = Callable[[], tuple[int, dict[str, Any]]]


def watch(
    fetch: Fetch,
    url: str,
    out: IO[str],
    *,
    interval: float,
    color: bool,
    clear: bool,
    sleep: Callable[[float], None],
    frames: int | None = None,
) -> None:
    """Show the status every ``interval`` seconds until interrupted (or ``frames`` shown).

    A daemon that cannot be reached is a line saying so, and the watch goes on.
    """
    shown = 0
    while frames is None or shown < frames:
        try:
            code, doc = fetch()
            snap = Snapshot.from_doc(doc)
            lines = render(snap, url, code == 200 and snap.status == "ok", color)
        except AuditdError as exc:
            lines = [f"{RED}●{RESET} {exc}" if color else f"● {exc}"]
        out.write((CLEAR if clear else "") + "\n".join(lines) + "\n")
        if not clear:
            out.write("\n")
        out.flush()
        shown += 1
        if frames is None or shown < frames:
            sleep(interval)
