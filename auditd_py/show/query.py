"""Which records ``show`` prints: one frozen :class:`Query`, built from the options.

Matches combine as journalctl's do: ``FIELD=VALUE`` for the same field twice is
either value (OR), different fields must all match (AND); ``--source`` given
twice is either source. ``-p`` is one priority (that one and everything more
severe) or a range ``FROM..TO``. ``-g`` is smart-case: case-insensitive unless
the pattern has an upper-case letter, or as ``--case-sensitive`` says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from auditd_py.errors import UsageError
from auditd_py.show.entry import PRIORITIES, Entry

Matches = tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class Query:
    """What to select; every field empty or None selects everything of the kind."""

    meta: bool = False
    """Only the daemon's own records (else only data records)."""
    all: bool = False
    """Data and meta records."""
    since: int | None = None
    until: int | None = None
    sources: frozenset[str] = frozenset()
    matches: Matches = ()
    priority: tuple[int, int] | None = None
    grep: re.Pattern[str] | None = None
    seq: tuple[int, int | None] | None = None
    """First and last seq (inclusive; None: to the end)."""
    host: str | None = None
    """The archive's host, for ``host=`` matches on records that name none."""

    def kind_ok(self, e: Entry) -> bool:
        return self.all or e.is_meta == self.meta

    def matches_entry(self, e: Entry) -> bool:
        """Whether ``e`` is selected (the cheap checks first)."""
        if not self.kind_ok(e):
            return False
        if self.seq is not None:
            lo, hi = self.seq
            if e.seq < lo or (hi is not None and e.seq > hi):
                return False
        t = e.time_ns
        if (self.since is not None and t < self.since) or (
            self.until is not None and t > self.until
        ):
            return False
        if self.sources and e.source not in self.sources:
            return False
        if self.priority is not None:
            lo, hi = self.priority
            if not lo <= e.priority() <= hi:
                return False
        for name, values in self.matches:
            if values.isdisjoint(e.field(name, self.host)):
                return False
        return self.grep is None or self.grep.search(str(e.obj.get("message", ""))) is not None


def parse_matches(args: Sequence[str]) -> Matches:
    """``FIELD=VALUE`` arguments, grouped by field (in the order first named)."""
    groups: dict[str, set[str]] = {}
    for a in args:
        name, eq, value = a.partition("=")
        if not eq or not name:
            raise UsageError(
                f"{a!r} is not a match: give FIELD=VALUE (e.g. app=sshd, unit=cron.service, "
                "priority=3, host=web1, or any stored field such as _SYSTEMD_UNIT=…)"
            )
        groups.setdefault(name, set()).add(value)
    return tuple((k, frozenset(v)) for k, v in groups.items())


def _priority(text: str) -> int:
    t = text.strip().lower()
    if t.isdigit() and int(t) <= 7:
        return int(t)
    aliases = {"error": "err", "warn": "warning", "emergency": "emerg", "critical": "crit"}
    t = aliases.get(t, t)
    if t in PRIORITIES:
        return PRIORITIES.index(t)
    raise UsageError(
        f"invalid priority {text!r}: use 0-7 or {', '.join(PRIORITIES)}, or a range FROM..TO"
    )


def parse_priority(text: str) -> tuple[int, int]:
    """``err`` → (0, 3); ``warning..err`` or ``3..4`` → (3, 4) whichever way round."""
    if ".." in text:
        a, _, b = text.partition("..")
        lo, hi = _priority(a), _priority(b)
        return (min(lo, hi), max(lo, hi))
    return (0, _priority(text))


def parse_seq(text: str) -> tuple[int, int | None]:
    """``A..B``, ``A..`` (to the end) or ``A`` (one record)."""
    a, dots, b = text.partition("..")
    try:
        lo = int(a)
        hi = (int(b) if b else None) if dots else lo
    except ValueError as exc:
        raise UsageError(f"invalid --seq {text!r}: use A..B, A.. or A") from exc
    if lo < 0 or (hi is not None and hi < lo):
        raise UsageError(f"invalid --seq {text!r}: want 0 <= A <= B")
    return lo, hi


def compile_grep(pattern: str, case_sensitive: bool | None) -> re.Pattern[str]:
    """Smart case: ignore case unless the pattern has upper case (or as told)."""
    if case_sensitive is None:
        case_sensitive = any(c.isupper() for c in pattern)
    try:
        return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
    except re.error as exc:
        raise UsageError(f"invalid --grep pattern: {exc}") from exc


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "yes", "true", "on", "y"):
        return True
    if t in ("0", "no", "false", "off", "n"):
        return False
    raise UsageError(f"invalid boolean {text!r}: use yes or no")
