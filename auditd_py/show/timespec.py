"""Times as ``journalctl --since`` takes them (the forms of systemd.time(7)).

``now``, ``today``, ``yesterday``, ``tomorrow``; ``-1h``, ``+30m``, ``1 hour ago``,
``2h30min ago``; ``2026-12-04``, ``2026-12-04 10:00``, ``2026-12-04 10:00:05.25``,
RFC 3339 (``2026-12-04T10:00:00Z``, ``…+01:00``), ``10:00`` (today); ``@1764842400``
(Unix seconds). A time without a zone is local time, or UTC with ``utc=True``
(``--utc``); a trailing ``UTC`` or ``Z`` makes it UTC either way. The current
time comes in as ``now_ns``: nothing here reads a clock.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from auditd_py.chain.format import NS
from auditd_py.errors import UsageError

FORMS = (
    "'now', 'today', 'yesterday', 'tomorrow', '-1h', '+30m', '1 hour ago', "
    "'2026-12-04', '2026-12-04 10:00[:05]', '2026-12-04T10:00:00Z', '10:00', '@1764842400'"
)
"""What the error message lists."""

_UNITS: dict[str, int] = {}
"""Nanoseconds per unit (a month is 30.44 days, a year 365.25, as systemd counts)."""
for _names, _per in (
    (("us", "usec", "µs"), 1000),
    (("ms", "msec"), 10**6),
    (("s", "sec", "secs", "second", "seconds"), NS),
    (("m", "min", "mins", "minute", "minutes"), 60 * NS),
    (("h", "hr", "hrs", "hour", "hours"), 3600 * NS),
    (("d", "day", "days"), 86400 * NS),
    (("w", "week", "weeks"), 7 * 86400 * NS),
    (("M", "month", "months"), 2_630_016 * NS),
    (("y", "year", "years"), 31_557_600 * NS),
):
    for _n in _names:
        _UNITS[_n] = _per

_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]*)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?")
_UNIX = re.compile(r"-?\d{1,12}(?:\.\d{1,9})?")
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}


def parse_span(text: str) -> int | None:
    """``1h30min``, ``2 hours``, ``90`` (seconds) → ns; None if it is not a time span."""
    pos, total, seen = 0, 0, False
    while pos < len(text):
        m = _SPAN_PART.match(text, pos)
        if m is None or m.end() == pos:
            return None if text[pos:].strip() else (total if seen else None)
        unit = m.group(2) or "s"
        per = _UNITS.get(unit, _UNITS.get(unit.lower()))
        if per is None:
            return None
        total += int(Decimal(m.group(1)) * per)
        pos, seen = m.end(), True
    return total if seen else None


def _ns(dt: datetime) -> int:
    """Unix ns of ``dt``; a naive ``dt`` is local time (with the DST of its own date)."""
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def _midnight(now_ns: int, tz: tzinfo | None, days: int) -> int:
    today = datetime.fromtimestamp(now_ns // NS, tz).date()
    return _ns(datetime.combine(today + timedelta(days=days), time(), tz))


def parse_time(text: str, now_ns: int, *, utc: bool = False) -> int:
    """A systemd.time(7) time → Unix ns; a UsageError naming the forms that work."""
    s = text.strip()
    tz: tzinfo | None = UTC if utc else None  # None: local time, DST and all
    if s.endswith(" UTC"):
        s, tz = s[:-4].strip(), UTC
    word = s.lower()
    if word == "now":
        return now_ns
    if word in _DAYS:
        return _midnight(now_ns, tz, _DAYS[word])
    if s.startswith("@"):
        if _UNIX.fullmatch(s[1:]):
            return int(Decimal(s[1:]) * NS)
    elif s[:1] in "+-" or word.endswith((" ago", " left")):
        sign = -1 if s[:1] == "-" or word.endswith(" ago") else 1
        body = s[1:] if s[:1] in "+-" else s.rsplit(" ", 1)[0]
        span = parse_span(body)
        if span is not None:
            return now_ns + sign * span
    else:
        clock = _CLOCK.fullmatch(s)
        if clock is not None:
            return _clock_today(clock, now_ns, tz)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            pass
        else:
            if dt.tzinfo is None and tz is not None:
                dt = dt.replace(tzinfo=tz)
            return _ns(dt)
    raise UsageError(f"invalid time {text!r}; use one of {FORMS}")


def _clock_today(m: re.Match[str], now_ns: int, tz: tzinfo | None) -> int:
    hh, mm = int(m.group(1)), int(m.group(2))
    ss = int(m.group(3) or 0)
    frac = int((m.group(4) or "0").ljust(9, "0"))
    if hh > 23 or mm > 59 or ss > 59:
        raise UsageError(f"invalid time of day {m.group(0)!r}")
    day: date = datetime.fromtimestamp(now_ns // NS, tz).date()
    return _ns(datetime.combine(day, time(hh, mm, ss), tz)) + frac


def join_time_options(argv: list[str], options: frozenset[str]) -> list[str]:
    """``--since -1h`` → ``--since=-1h``: argparse would take ``-1h`` for an option."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in options:
            value = next(it, None)
            if value is None:
                out.append(arg)
            elif value.startswith("-") and parse_span(value[1:]) is not None:
                out.append(f"{arg}={value}" if arg.startswith("--") else arg + value)
            else:
                out += [arg, value]
        else:
            out.append(arg)
    return out
