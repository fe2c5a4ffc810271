"""``auditd-py show``: the options turned into a :class:`Request`, and the run.

The CLI parses the arguments, records the read with the daemon, and hands the
request, the archive and its standard output here; this module writes the
records to that stream (through a pager on a terminal) and returns the exit
code. Errors are raised from :mod:`auditd_py.errors`, as everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import IO, Any

from auditd_py.chain.identity import Identity
from auditd_py.errors import AuditdError, UsageError
from auditd_py.show import follow, pager, query, scan, timespec
from auditd_py.show.entry import Entry
from auditd_py.show.formats import Style, render
from auditd_py.show.query import Query
from auditd_py.store.layout import Layout

FOLLOW_POLL = 0.2
"""Seconds between looks at the archive while following."""


@dataclass(frozen=True, slots=True)
class Request:
    query: Query
    style: Style
    lines: int | None
    """``-n``: the last N selected records (None: all)."""
    reverse: bool
    follow: bool
    pager: bool


def _time(text: str | None, now_ns: int, utc: bool) -> int | None:
    return timespec.parse_time(text, now_ns, utc=utc) if text is not None else None


def _lines(a: argparse.Namespace) -> int | None:
    if a.lines is not None:
        if a.lines in {"all", "+"}:
            return None
        try:
            n = int(a.lines)
        except ValueError as exc:
            raise UsageError(f"invalid -n {a.lines!r}: give a number or 'all'") from exc
        if n < 0:
            raise UsageError(f"invalid -n {a.lines!r}: give a number >= 0")
        return n
    return 10 if a.follow else None


def request_from(a: argparse.Namespace, now_ns: int, terminal: bool) -> Request:
    """The request the parsed ``show`` options stand for."""
    cs = query.parse_bool(a.case_sensitive) if a.case_sensitive is not None else None
    q = Query(
        meta=a.meta,
        all=a.all,
        since=_time(a.since, now_ns, a.utc),
        until=_time(a.until, now_ns, a.utc),
        sources=frozenset(a.source or ()),
        matches=query.parse_matches(a.matches),
        priority=query.parse_priority(a.priority) if a.priority else None,
        grep=query.compile_grep(a.grep, cs) if a.grep is not None else None,
        seq=query.parse_seq(a.seq) if a.seq else None,
    )
    output = "json" if a.json else a.output
    tz = UTC if a.utc else None  # None: local time
    style = Style(output=output, tz=tz, escape=terminal, show_seal=a.show_seal)
    return Request(
        query=q,
        style=style,
        lines=_lines(a),
        reverse=a.reverse,
        follow=a.follow,
        pager=terminal and not a.no_pager and not a.follow,
    )


def access_args(a: argparse.Namespace) -> dict[str, Any]:
    """What the daemon records of this read (``archive.read``)."""
    base: dict[str, Any] = {
        "meta": a.meta,
        "all": a.all,
        "json": a.json,
        "since": a.since,
        "until": a.until,
        "source": ",".join(a.source) if a.source else None,
        "grep": a.grep,
    }
    more: dict[str, Any] = {
        "output": a.output if a.output != "short" else None,
        "priority": a.priority,
        "seq": a.seq,
        "match": " ".join(a.matches) if a.matches else None,
        "lines": a.lines,
        "reverse": a.reverse,
        "follow": a.follow,
    }
    return base | {k: v for k, v in more.items() if v is not None and v is not False}


def _host(layout: Layout) -> str | None:
    try:
        return Identity.from_bytes(layout.read_identity()).host
    except AuditdError:
        return None


def _selected(layout: Layout, r: Request) -> Iterable[Entry]:
    q = r.query
    if r.lines is not None:
        newest = list(itertools.islice(scan.backward(layout, q), r.lines))
        return newest if r.reverse else reversed(newest)
    return scan.backward(layout, q) if r.reverse else scan.forward(layout, q)


def run(
    layout: Layout,
    r: Request,
    out: IO[bytes],
    env: Mapping[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write the selected records to ``out``; with ``follow``, until interrupted."""
    host = _host(layout)
    style = dataclasses.replace(r.style, host=host)
    r = dataclasses.replace(r, query=dataclasses.replace(r.query, host=host))
    start = follow.end_position(layout) if r.follow else None
    last = -1
    with pager.paged(out, env, r.pager) as sink:
        for e in _selected(layout, r):
            sink.write(render(e, style))
            last = max(last, e.seq)
    if start is None:
        return 0
    out.flush()

    def wait() -> bool:
        out.flush()
        sleep(FOLLOW_POLL)
        return True

    try:
        for e in follow.follow(layout, r.query, start, last, wait):
            out.write(render(e, style))
    except KeyboardInterrupt:
        out.flush()
    return 0
