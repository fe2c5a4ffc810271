"""The timeline ``verify --report`` draws, read from an archive source.

A second, lighter pass than the verification (only with ``--report``): it reads
the checkpoints (epochs), every segment's seq range and times, and the daemon's
own records that mark the timeline (retention deletions, torn-tail recoveries,
clock jumps, sealer stalls). It trusts nothing it reads, and stops at nothing:
a damaged line or file is skipped, the verification says what is wrong with it.
The axis is the record sequence (seq), which only grows, unlike the clock.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import META_SOURCE, scan_int
from auditd_py.errors import AuditdError
from auditd_py.report.outcome import Finding, Outcome
from auditd_py.store.verification import ArchiveSource

_SEQ = re.compile(rb'\{"seq":(\d+),')
_META = b'"source":"' + META_SOURCE.encode() + b'"'
_MARKED = {
    "retention.deleted": "retention",
    "recovery.torn_tail": "recovery",
    "clock.jump": "clock-jump",
    "sealer.stalled": "stall",
    "sealer.resumed": "resume",
}
STALE_FACTOR = 2
"""An epoch that ends this many times the median epoch length after the one before is stale."""


@dataclass(frozen=True, slots=True)
class Span:
    kind: str
    label: str
    start: int
    """First seq covered."""
    end: int
    """Seq after the last one covered."""
    time_start: int | None = None
    time_end: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str
    label: str
    seq: int
    time: int | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    start: int
    end: int
    epochs: tuple[Span, ...]
    segments: tuple[Span, ...]
    stale: tuple[Span, ...]
    marks: tuple[Mark, ...]
    failures: tuple[Mark, ...]

    @property
    def checkpoints(self) -> tuple[Mark, ...]:
        return tuple(m for m in self.marks if m.kind == "checkpoint")


def _checkpoints(source: ArchiveSource) -> list[Checkpoint]:
    out = []
    try:
        raws = source.read_checkpoints()
    except AuditdError:
        return []
    for name, raw in raws:
        try:
            out.append(Checkpoint.from_line(raw, file=name))
        except AuditdError:
            continue
    return out


def _mark_of(line: bytes, seq: int) -> Mark | None:
    if _META not in line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    kind = _MARKED.get(str(obj.get("event"))) if isinstance(obj, dict) else None
    if kind is None:
        return None
    assert isinstance(obj, dict)
    raw = obj.get("attrs")
    attrs: dict[str, Any] = raw if isinstance(raw, dict) else {}
    t = obj.get("time") if isinstance(obj.get("time"), int) else None
    label = {
        "retention": f"retention deleted {attrs.get('file')} ({attrs.get('policy')})",
        "recovery": f"recovered: {attrs.get('length')} torn bytes cut from {attrs.get('segment')}",
        "clock-jump": f"clock jumped {int(attrs.get('jump_ns') or 0) / 1e9:+.3f}s",
        "stall": "sealer stalled",
        "resume": "sealer resumed",
    }[kind]
    return Mark(kind, label, seq, t)


def _segment(name: str, lines: Iterable[bytes], marks: list[Mark]) -> Span | None:
    first = last = None
    t0 = t1 = None
    for line in lines:
        m = _SEQ.match(line)
        if m is None:
            continue
        seq = int(m.group(1))
        t = scan_int(line, b"time")
        if first is None:
            first, t0 = seq, t
        last, t1 = seq, t
        mark = _mark_of(line, seq)
        if mark is not None:
            marks.append(mark)
    if first is None or last is None:
        return None
    return Span("segment", name, first, last + 1, t0, t1)


def _stale(epochs: list[Span], cps: list[Checkpoint]) -> list[Span]:
    """Epochs that ended long after the one before: the cadence is that of the epochs
    a timer ended (reason ``interval``); with none, nothing is called stale."""
    lengths = [c.end - c.start for c in cps if c.reason == "interval" and c.end > c.start]
    if not lengths:
        return []
    limit = STALE_FACTOR * statistics.median(lengths)
    out = []
    for prev, cur in itertools.pairwise(epochs):
        if prev.time_end is not None and cur.time_end is not None:
            gap = cur.time_end - prev.time_end
            if gap > limit:
                out.append(
                    Span(
                        "stale",
                        f"no checkpoint for {gap / 1e9:.0f}s before epoch {cur.label}",
                        cur.start,
                        cur.end,
                        prev.time_end,
                        cur.time_end,
                    )
                )
    return out


def _stalls(marks: list[Mark]) -> list[Span]:
    out = []
    open_at: Mark | None = None
    for m in marks:
        if m.kind == "stall":
            open_at = m
        elif m.kind == "resume" and open_at is not None:
            out.append(
                Span("stale", "sealer stalled", open_at.seq, m.seq + 1, open_at.time, m.time)
            )
            open_at = None
    return out


def _failure_mark(f: Finding, segs: list[Span], cps: list[Checkpoint], end: int) -> Mark:
    seq = f.seq
    if seq is None and f.file is not None:
        seq = next((s.start for s in segs if f.file == f"segments/{s.label}"), None)
    if seq is None and f.epoch is not None:
        seq = next((c.seq_first for c in cps if c.epoch == f.epoch), None)
    return Mark("failure", f"{f.code}: {f.message}", end if seq is None else seq)


def build(source: ArchiveSource, outcome: Outcome) -> Timeline:
    """Read the timeline of ``source``; ``outcome`` places its failures on it."""
    cps = _checkpoints(source)
    marks: list[Mark] = []
    segs: list[Span] = []
    try:
        listed = source.list_segments()
    except AuditdError:
        listed = []
    for name, ref in listed:
        try:
            with source.open_lines(ref) as fh:
                span = _segment(name, fh, marks)
        except (AuditdError, OSError):
            continue
        if span is not None:
            segs.append(span)
    epochs = [Span("epoch", str(c.epoch), c.seq_first, c.seq_end, c.start, c.end) for c in cps]
    marks += [
        Mark("checkpoint", f"checkpoint {c.epoch} ({c.reason})", c.seq_end, c.end) for c in cps
    ]
    start = min([s.start for s in segs] + [e.start for e in epochs if e.end > e.start] or [0])
    end = max([s.end for s in segs] + [e.end for e in epochs] + [start])
    if segs and segs[0].start > 0:
        marks.append(
            Mark("retention-cut", f"records 0..{segs[0].start - 1} deleted", segs[0].start)
        )
    stale = _stale(epochs, cps) + _stalls(marks)
    last_sealed = cps[-1].seq_end if cps else 0
    if end > last_sealed:
        stale.append(
            Span("unsealed", "records after the last checkpoint", max(last_sealed, start), end)
        )
    failures = tuple(_failure_mark(f, segs, cps, end) for f in outcome.failures)
    marks.sort(key=lambda m: m.seq)
    return Timeline(start, end, tuple(epochs), tuple(segs), tuple(stale), tuple(marks), failures)
