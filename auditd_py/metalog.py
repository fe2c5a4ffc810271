"""The daemon's own log: structlog JSON on stderr, and every event sealed.

Event names form a closed catalogue (:mod:`auditd_py.events`); fields, not
prose, carry the details. Each event is written to stderr as one JSON object (systemd sends it
to the journal) and queued to be sealed as a record of source ``auditd-py``, in
order with the data, so an auditor sees in the chain itself when the daemon
started, stopped, rotated or lost anything.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Final, Protocol

import structlog

from auditd_py import events
from auditd_py.contracts import MetaItem

LOG_FORMATS: Final = ("auto", "json", "console")
LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# sd-daemon(3) priority prefixes: journald strips "<N>" and files the line at N.
_PRIORITY: Final = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_CONTROL: Final = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09}
_COLOR: Final = {"warning": "\x1b[33m", "error": "\x1b[31;1m", "critical": "\x1b[31;1m"}


def is_journal_stream(stream: Any) -> bool:
    """Whether ``stream`` is the journal stream systemd connected ($JOURNAL_STREAM)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def _escape(text: str) -> str:
    """Control characters (terminal escapes among them) as visible ``\\xNN``."""
    return text.translate(_CONTROL)


class ConsoleLine:
    """``HH:MM:SS.mmm level event: message  key=value ...`` for people at a terminal."""

    def __init__(self, colors: bool) -> None:
        self.colors = colors

    def __call__(self, logger: Any, method_name: str, ev: dict[str, Any]) -> str:
        ts = str(ev.pop("timestamp", ""))[11:23]
        level = str(ev.pop("level", method_name))
        name = str(ev.pop("event", ""))
        message = str(ev.pop("message", ""))
        rest = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in ev.items())
        text = f"{ts} {level:<7} {name}: {message}" + (f"  [{rest}]" if rest else "")
        text = _escape(text)
        color = _COLOR.get(level) if self.colors else None
        return f"{color}{text}\x1b[0m" if color else text


def _journal_priority(logger: Any, method_name: str, line: str) -> str:
    return f"<{_PRIORITY.get(method_name, 6)}>{line}"


def configure(stream: Any = None, level: int = logging.INFO, fmt: str = "auto") -> None:
    """The daemon's log on stderr: JSON lines, or readable lines on a terminal.

    ``fmt`` ``auto`` picks ``console`` when the stream is a terminal and ``json``
    otherwise (systemd, a pipe, a file). On the journal's stream each line starts
    with its sd-daemon priority prefix, so ``journalctl -p warning`` shows the
    warnings and errors, not everything as ``info``.
    """
    out = stream or sys.stderr
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    tty = bool(getattr(out, "isatty", lambda: False)())
    if fmt == "auto":
        fmt = "console" if tty else "json"
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        ConsoleLine(colors=tty) if fmt == "console" else structlog.processors.JSONRenderer(),
    ]
    if is_journal_stream(out):
        processors.append(_journal_priority)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


class MetaQueue(Protocol):
    """Where meta events are sealed from: the daemon's queue (never refuses them)."""

    def put_meta(self, item: MetaItem) -> None: ...


class MetaLog:
    """Implements :class:`auditd_py.sources.base.Meta`."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("auditd-py")
        self._queue: MetaQueue | None = None
        self._pending: list[MetaItem] = []
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def log_only(self, name: str, message: str, **fields: Any) -> None:
        """Log without sealing: for events the archive writer seals itself
        (``segment.rotated``), which would otherwise be in the chain twice."""
        if name not in events.CATALOGUE:
            raise ValueError(f"meta-log event {name!r} is not in the catalogue")
        level = events.severity(name)
        getattr(self._log, level)(name, message=message, **fields)
        self.counts[name] = self.counts.get(name, 0) + 1

    def attach(self, queue: MetaQueue) -> None:
        """From now on events are sealed; those logged before are sealed first."""
        with self._lock:
            self._queue = queue
            for item in self._pending:
                queue.put_meta(item)
            self._pending.clear()

    def detach(self) -> None:
        with self._lock:
            self._queue = None

    def event(self, name: str, message: str, **fields: Any) -> None:
        self.log_only(name, message, **fields)
        item = MetaItem(name, message, _jsonable(fields))
        with self._lock:
            if self._queue is not None:
                self._queue.put_meta(item)
            else:
                self._pending.append(item)


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, bytes):
            out[k] = v.decode("utf-8", "backslashreplace")
        elif isinstance(v, str | int | bool) or v is None:
            out[k] = v
        elif isinstance(v, float):
            out[k] = repr(v)  # no floats in sealed records: their JSON spelling varies
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | int | bool) or x is None else str(x) for x in v]
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
        else:
            out[k] = str(v)
    return out
