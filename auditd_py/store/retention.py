"""Retention: which closed segments may be deleted, oldest first, and why.

The decision is a pure function (:func:`plan`) of the segments' sizes and
header facts, the clock, the free space and the policy. Carrying it out is the
writer's job (:meth:`~auditd_py.store.writer.ArchiveWriter.retire_segment`),
which seals a ``retention.deleted`` record before it removes anything, so that
``verify`` can tell a deletion by policy from an attack (docs/FORMAT.md 16).

Only the **oldest** segment is ever deleted, one at a time, and only when

* it is closed (a later segment exists) and every record in it is covered by a
  checkpoint: the next segment's first seq is at most the last checkpoint's
  ``seq_end``;
* the next segment's header states the chain state at the cut (``prev_mac``,
  ``merkle_range``), which the archive needs to start there;
* no one still needs it: not being compressed right now, and not holding
  records an enabled forwarder has not delivered (``floor``).

A segment that cannot be deleted stops the plan: retention never skips one to
delete a younger one (that would leave a hole that no verifier accepts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from auditd_py.errors import ArchiveError
from auditd_py.store.layout import Layout
from auditd_py.store.segment import Header, read_header

if TYPE_CHECKING:
    from auditd_py.store.writer import ArchiveWriter

KEEP_FOREVER = "keep_forever"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment as retention sees it."""

    name: str
    file: Path
    bytes: int
    """Size on disk (compressed size for a compressed segment)."""
    header: Header


class SegmentIndex:
    """The archive's segments with their headers, read once per segment and cached."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._headers: dict[str, Header] = {}

    def scan(self) -> list[SegmentInfo]:
        out: list[SegmentInfo] = []
        files = self.layout.segment_files()
        for name, path in files:
            try:
                size = path.stat().st_size
                h = self._headers.get(name)
                if h is None:
                    h = read_header(path, name)
                    self._headers[name] = h
            except FileNotFoundError:
                # compressed (renamed) since it was listed: the new file is found next time
                continue
            except ArchiveError:
                if name == files[-1][0]:
                    continue  # the open segment before its header reached the disk
                raise
            out.append(SegmentInfo(name, path, size, h))
        alive = {s.name for s in out}
        for gone in set(self._headers) - alive:
            del self._headers[gone]
        return out

    def forget(self, name: str) -> None:
        self._headers.pop(name, None)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The YAML ``retention:`` section; ``None`` means that limit is off."""

    max_age_ns: int | None = None
    max_total_bytes: int | None = None
    max_segments: int | None = None
    min_free_bytes: int | None = None
    keep_forever: bool = False

    @property
    def deletes(self) -> bool:
        """Whether any limit can ever delete a segment."""
        return not self.keep_forever and any(
            v is not None
            for v in (self.max_age_ns, self.max_total_bytes, self.max_segments, self.min_free_bytes)
        )


@dataclass(frozen=True, slots=True)
class Deletion:
    """One segment to delete and the policy that fired (sealed in the record)."""

    name: str
    policy: str
    detail: str


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why the oldest segment that a policy wants gone is kept for now."""

    name: str
    policy: str
    reason: str


def plan(
    segments: Sequence[SegmentInfo],
    policy: RetentionPolicy,
    *,
    now_ns: int,
    sealed_end: int,
    free_bytes: int | None = None,
    need_free_bytes: int | None = None,
    floor: int | None = None,
    busy: Callable[[str], bool] = lambda _name: False,
) -> tuple[list[Deletion], Blocked | None]:
    """The oldest-first run of segments to delete now, and what stopped it.

    ``segments`` are all segments in order, the last one open. ``sealed_end`` is
    the last checkpoint's ``seq_end``. ``need_free_bytes`` asks for space beyond
    the policy (the disk-pressure action ``rotate``); ``floor`` is the lowest seq
    a forwarder has not delivered yet.
    """
    out: list[Deletion] = []
    if policy.keep_forever:
        return out, None
    count = len(segments)
    total = sum(s.bytes for s in segments)
    freed = 0
    for i, seg in enumerate(segments[:-1]):
        nxt = segments[i + 1]
        why = _why(seg, nxt, policy, now_ns, count, total, free_bytes, need_free_bytes, freed)
        if why is None:
            return out, None
        reason = _blocked(seg, nxt, sealed_end, floor, busy)
        if reason is not None:
            return out, Blocked(seg.name, why[0], reason)
        out.append(Deletion(seg.name, *why))
        count -= 1
        total -= seg.bytes
        freed += seg.bytes
    return out, None


def _why(
    seg: SegmentInfo,
    nxt: SegmentInfo,
    policy: RetentionPolicy,
    now_ns: int,
    count: int,
    total: int,
    free: int | None,
    need: int | None,
    freed: int,
) -> tuple[str, str] | None:
    if policy.max_segments is not None and count > policy.max_segments:
        return "max_segments", f"{count} segments > {policy.max_segments}"
    if policy.max_total_bytes is not None and total > policy.max_total_bytes:
        return "max_total_bytes", f"{total} bytes > {policy.max_total_bytes}"
    closed_at = nxt.header.time_ns  # the next segment opened when this one closed
    if policy.max_age_ns is not None and now_ns - closed_at > policy.max_age_ns:
        age_s = (now_ns - closed_at) // 1_000_000_000
        return "max_age", f"closed {age_s}s ago > {policy.max_age_ns // 1_000_000_000}s"
    if (
        free is not None
        and policy.min_free_bytes is not None
        and free + freed < policy.min_free_bytes
    ):
        return "min_free_bytes", f"{free + freed} bytes free < {policy.min_free_bytes}"
    if free is not None and need is not None and free + freed < need:
        return "disk_pressure", f"{free + freed} bytes free < {need} wanted by the disk action"
    return None


def _blocked(
    seg: SegmentInfo,
    nxt: SegmentInfo,
    sealed_end: int,
    floor: int | None,
    busy: Callable[[str], bool],
) -> str | None:
    end = nxt.header.seq
    if end > sealed_end:
        return f"its records (up to seq {end - 1}) are not all checkpointed yet"
    if not nxt.header.resumable:
        return (
            f"{nxt.name} was written by a version whose header does not state the chain "
            "state at the cut, so the archive cannot start there"
        )
    if nxt.header.prev_segment != seg.name:
        return f"{nxt.name} does not name it as its predecessor"
    if floor is not None and end > floor:
        return f"a forwarder has not delivered its records yet (delivered up to seq {floor})"
    if busy(seg.name):
        return "it is being compressed"
    return None


def free_space(path: Path) -> tuple[int, int]:
    """(bytes available to the daemon, total bytes) of the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class Retainer:
    """Runs the retention plan against a writer (from the sealer thread, lock held)."""

    def __init__(
        self,
        layout: Layout,
        policy: RetentionPolicy,
        *,
        min_free: Callable[[int], int] | None = None,
        busy: Callable[[str], bool] = lambda _name: False,
        floor: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.layout = layout
        self.policy = policy
        self.index = SegmentIndex(layout)
        self._min_free = min_free
        """``retention.min_free`` in bytes, given the file system's size."""
        self.busy = busy
        self.floor = floor
        self.deleted = 0
        self.deleted_bytes = 0
        self.last_blocked: Blocked | None = None

    def run(
        self, writer: ArchiveWriter, *, need_free: int | None = None, owed: int = 0
    ) -> tuple[list[dict[str, object]], Blocked | None]:
        """Delete what the policy (and ``need_free``, from the disk action) asks for now.

        ``owed`` is space counted as used although it is free now (the reserve
        file, given back on a full disk, is to be allocated again).
        """
        if not self.policy.deletes and need_free is None:
            return [], None
        segs = self.index.scan()
        free, total = free_space(self.layout.segments)
        free = max(0, free - owed)
        policy = self.policy
        if self._min_free is not None:
            policy = replace(policy, min_free_bytes=self._min_free(total))
        floor = self.floor()
        todo, blocked = plan(
            segs,
            policy,
            now_ns=writer.clock.now_ns(),
            sealed_end=writer.sealer.epoch_first_seq,
            free_bytes=free,
            need_free_bytes=need_free,
            # A disk action frees space even before forwarders delivered (sealed as such).
            floor=None if need_free is not None else floor,
            busy=self.busy,
        )
        ends = {s.name: segs[i + 1].header.seq for i, s in enumerate(segs[:-1])}
        done: list[dict[str, object]] = []
        for d in todo:
            detail = d.detail
            undelivered = floor is not None and ends.get(d.name, 0) > floor
            if undelivered:
                detail += (
                    f"; not yet forwarded (delivered up to seq {floor}): deleted by the disk "
                    "action before delivery"
                )
            info = writer.retire_segment(
                d.name, policy=d.policy, detail=detail, undelivered=undelivered
            )
            self.index.forget(d.name)
            self.deleted += 1
            self.deleted_bytes += int(str(info["bytes"]))
            done.append(info)
        self.last_blocked = blocked
        return done, blocked
