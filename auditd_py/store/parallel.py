"""Verify an archive's segments in several processes, with the one-process verdict.

Each worker process verifies one segment on its own, starting from what the
segment's header states about the chain just before it (``prev_segment``,
``prev_link``, ``prev_mac``, ``merkle_range`` and the header's seq: docs/FORMAT.md
11.1, the same statement a retained archive resumes from). The parent then
walks the segments in order and joins: a worker's result is adopted only if
the worker succeeded, saw no record whose check needs other segments (a
``recovery.torn_tail`` or ``retention.deleted`` record), and the state its
header stated equals the state the parent reached at the end of the segment
before (which is exactly what R5 compares). Every other segment, and the
first, is verified again in the parent with the one-process loop, so the
first failure reported, and every report, is the one-process one.

Workers are forked: they inherit the source and the verifier factory, nothing
is pickled but small results. R6 at a checkpoint boundary inside a segment is
checked by the worker from the joined state; a boundary exactly at a segment's
start was checked at the end of the segment before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from auditd_py.chain.encoding import mac_state, scan_int
from auditd_py.chain.keys import evolve_mac_key
from auditd_py.chain.verify import Verifier
from auditd_py.chain.verify_meta import SegmentRead

if TYPE_CHECKING:
    from concurrent.futures import Future

Stack = tuple[bytes, ...]
State = tuple[int, bytes, bytes, Stack, str | None]
"""(seq, link, MAC, Merkle compact range, previous segment's name) before a segment."""


class SegmentLines(Protocol):
    def open_lines(self, ref: str) -> AbstractContextManager[IO[bytes]]: ...


def default_jobs() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, slots=True)
class Done:
    """One segment verified by a worker from the state its header states."""

    start: State
    start_ci: int
    seq: int
    link: bytes
    mac: bytes
    stack: Stack
    ci: int
    lines: int
    size: int
    torn: int
    last_body: bytes | None
    unsealed_at: dict[str, Any] | None


# What a forked worker inherits: set by the parent before the pool starts.
_job: tuple[SegmentLines, Callable[[], Verifier], Sequence[tuple[str, str]]] | None = None


def _header_state(fh: IO[bytes]) -> State | None:
    """What a segment's header states about the chain before it; None if it does not."""
    first = fh.readline()
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    attrs = obj.get("attrs") if isinstance(obj, dict) else None
    seq = scan_int(first, b"seq")
    if not isinstance(attrs, dict) or seq is None:
        return None
    prev, link, mac, rng = (
        attrs.get(k) for k in ("prev_segment", "prev_link", "prev_mac", "merkle_range")
    )
    try:
        assert isinstance(prev, str) and isinstance(link, str) and isinstance(mac, str)
        assert isinstance(rng, list) and len(rng) == seq.bit_count() and seq > 0
        return (
            seq,
            bytes.fromhex(link),
            bytes.fromhex(mac),
            tuple(bytes.fromhex(n) for n in rng),
            prev,
        )
    except (AssertionError, ValueError, TypeError):
        return None


def _set_state(v: Verifier, seq: int, link: bytes, mac: bytes, stack: Stack, ci: int) -> None:
    """Move ``v`` to a chain state; epochs ``< ci`` count as closed (their keys evolve)."""
    v.seq, v.link, v.mac = seq, link, mac
    v.stack[:] = stack  # in place: the record loops alias it
    while v.ci < ci:
        v.ci += 1
        if v._mac_key is not None:
            v._mac_key = evolve_mac_key(v._mac_key)
            v._mac = mac_state(v._mac_key)
    v._boundary = v.cps[v.ci].seq_end if v.ci < len(v.cps) else -1


def _work(i: int) -> Done | None:
    """Verify segment ``i`` from its header's statement (in a worker process)."""
    assert _job is not None
    source, make, segs = _job
    name, ref = segs[i]
    try:
        with source.open_lines(ref) as fh:
            start = _header_state(fh)
        if start is None:
            return None
        seq, link, mac, stack, prev = start
        v = make()
        v.segments.append(SegmentRead(prev or "", size=None, end=None))
        ci = sum(1 for cp in v.cps if cp.seq_end <= seq)
        _set_state(v, seq, link, mac, stack, ci)
        v.begin_segment(name)
        with source.open_lines(ref) as fh:
            size, torn = v.records(fh)
        v.end_segment(size, torn, last=i == len(segs) - 1)
        if v.recovered or v.history.deletions:
            return None  # their checks need the other segments: the parent redoes it
        seg = v.segments[-1]
        return Done(
            start, ci, v.seq, v.link, v.mac, tuple(v.stack), v.ci, seg.line, size, torn,
            v._last_body, v._unsealed_at,
        )  # fmt: skip
    except Exception:  # an AuditdError, or anything odd: the parent verifies it again
        return None


def read_segments(
    v: Verifier,
    source: SegmentLines,
    segs: Sequence[tuple[str, str]],
    make: Callable[[], Verifier],
    jobs: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Feed every segment to ``v`` (as the one-process loop does), using ``jobs`` processes.

    ``make`` builds a fresh verifier like ``v`` (the same identity, checkpoints
    and policy) in a worker. Returns how many segments a worker's result was
    joined for (the others were verified again here).
    """
    # Imported here: they cost every command ~20 ms at start, and only this one needs them.
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    global _job  # noqa: PLW0603 - handed to the forked workers, cleared after
    _job = (source, make, segs)
    ctx = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_work, i) for i in range(1, len(segs))]
            try:
                return _join(v, source, segs, futures, progress)
            finally:
                for f in futures:
                    f.cancel()
    finally:
        _job = None


def _join(
    v: Verifier,
    source: SegmentLines,
    segs: Sequence[tuple[str, str]],
    futures: Sequence[Future[Done | None]],
    progress: Callable[[int], None] | None,
) -> int:
    joined = 0
    for i, (name, ref) in enumerate(segs):
        last = i == len(segs) - 1
        done = futures[i - 1].result() if i else None
        here: State = (v.seq, v.link, v.mac, tuple(v.stack), v.segments[-1].name if i else None)
        if done is not None and done.start == here and done.start_ci == v.ci:
            v.begin_segment(name)
            _set_state(v, done.seq, done.link, done.mac, done.stack, done.ci)
            seg = v.segments[-1]
            seg.line = done.lines
            if done.last_body is not None:
                v._last_body = done.last_body
            if v._unsealed_at is None:
                v._unsealed_at = done.unsealed_at
            v.end_segment(done.size, done.torn, last=last)
            joined += 1
        else:
            v.begin_segment(name)
            with source.open_lines(ref) as fh:
                size, torn = v.records(fh, progress)
            v.end_segment(size, torn, last=last)
        if progress is not None:
            progress(-1)
    return joined
