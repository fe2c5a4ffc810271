"""One record as ``show`` sees it: the stored line, its JSON, and journald-like fields.

Syslog records keep their header in ``attrs.syslog``, journald records every
journal field in ``attrs.journal``, the daemon's own records an event name;
file records have only their source. :class:`Entry` maps them onto the fields
journalctl shows (host, app, pid, unit, priority), and :meth:`Entry.field` finds
any other stored field by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditd_py.chain.encoding import META_SOURCE, parse_record
from auditd_py.errors import FormatError
from auditd_py.events import severity

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
"""syslog severities 0..7, as journalctl names them."""
_META_PRIORITY = {"error": 3, "warning": 4, "info": 6}
DEFAULT_PRIORITY = 6
"""A record without a priority (a file's line) counts as info, as journald's default."""

NAMED = ("host", "app", "pid", "unit", "priority")
"""The fields every record has a value for (or None), whatever its source."""


def _dict(v: object) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True, slots=True)
class Entry:
    """A record line (without its newline), where it is, and its parsed JSON."""

    segment: str
    line: bytes
    obj: dict[str, Any]

    @classmethod
    def parse(cls, segment: str, line: bytes) -> Entry:
        try:
            return cls(segment, line, parse_record(line))
        except FormatError as exc:
            raise FormatError(exc.message, file=f"segments/{segment}") from exc

    @property
    def seq(self) -> int:
        v = self.obj.get("seq")
        return v if isinstance(v, int) else -1

    @property
    def time_ns(self) -> int:
        v = self.obj.get("time")
        return v if isinstance(v, int) else 0

    @property
    def source(self) -> str:
        return str(self.obj.get("source", ""))

    @property
    def is_meta(self) -> bool:
        return self.obj.get("source") == META_SOURCE

    @property
    def attrs(self) -> dict[str, Any]:
        return _dict(self.obj.get("attrs"))

    @property
    def syslog(self) -> dict[str, Any]:
        return _dict(self.attrs.get("syslog"))

    @property
    def journal(self) -> dict[str, Any]:
        return _dict(self.attrs.get("journal"))

    def host(self, default: str | None = None) -> str | None:
        v = self.syslog.get("hostname") or self.journal.get("_HOSTNAME")
        return str(v) if isinstance(v, str) else default

    def app(self) -> str:
        if self.is_meta:
            return META_SOURCE
        j = self.journal
        v = self.syslog.get("app") or j.get("SYSLOG_IDENTIFIER") or j.get("_COMM")
        return v if isinstance(v, str) else self.source

    def pid(self) -> str | None:
        v = self.syslog.get("procid") or self.journal.get("_PID")
        return str(v) if isinstance(v, str | int) and not isinstance(v, bool) else None

    def unit(self) -> str | None:
        v = self.journal.get("_SYSTEMD_UNIT") or self.attrs.get("unit")
        return v if isinstance(v, str) else None

    def priority(self) -> int:
        sev = self.syslog.get("severity")
        if isinstance(sev, int) and 0 <= sev <= 7:
            return sev
        jp = self.journal.get("PRIORITY")
        if isinstance(jp, str) and jp.isdigit() and int(jp) <= 7:
            return int(jp)
        event = self.obj.get("event")
        if self.is_meta and isinstance(event, str):
            return _META_PRIORITY[severity(event)]
        return DEFAULT_PRIORITY

    def field(self, name: str, host: str | None = None) -> list[str]:
        """Every value of the field ``name`` as text (empty if the record has none).

        The named fields (``host``, ``app``, ``pid``, ``unit``, ``priority``, any
        case), then the record's own keys (``source``, ``event``, ``seq``…), then
        ``attrs`` keys (``transport``, ``peer``…), the syslog header
        (``msgid``, ``facility``…) and journal fields (``_SYSTEMD_UNIT``, ``_UID``…).
        ``host`` is the host of records that name none (the archive's).
        """
        low = name.lower()
        if low in NAMED:
            v: Any = self.host(host) if low == "host" else getattr(self, low)()
            return [] if v is None else [str(v)]
        for place in (self.obj, self.attrs, self.syslog, self.journal):
            if name in place:
                return _texts(place[name])
        return []


def _texts(v: Any) -> list[str]:
    if isinstance(v, list):
        return [x for item in v for x in _texts(item)]
    if isinstance(v, bool):
        return [str(v).lower()]
    if isinstance(v, str | int | float):
        return [str(v)]
    return []
