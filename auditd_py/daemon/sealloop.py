"""The seal loop: queue → archive, with group commits, rotation and retention.

One thread owns the :class:`~auditd_py.store.writer.ArchiveWriter`. It takes
batches from the queue, seals them, and makes them durable with a group commit
(one fsync per ``commit_interval`` at most, never per line). It also ends
epochs on time even when no record arrives, so an idle archive still gets its
checkpoints and its keys still evolve. What it has to tell goes to one
:class:`SealEvents` object (the daemon words and seals it).
"""

from __future__ import annotations

import bisect
import contextlib
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol, cast

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.clock import Clock, SystemClock
from auditd_py.contracts import MetaItem
from auditd_py.daemon import sizebound
from auditd_py.daemon.queue import BatchQueue, Item
from auditd_py.errors import ArchiveError, DiskFullError
from auditd_py.record import Fields
from auditd_py.store.reserve import Reserve
from auditd_py.store.retention import Blocked, Retainer
from auditd_py.store.writer import ArchiveWriter

_ONLY_FIELDS = {Fields}
_SOURCE = attrgetter("source")

PAUSES_KEPT = 1024
"""Rotation pauses kept for their percentiles (the longest is kept separately)."""
GATE_WAIT_MAX = 1.0
"""Seconds a due rotation may be postponed while the compressor syncs or deletes a file."""
ROTATION_SWITCH_INTERVAL = 0.0005
"""``sys.setswitchinterval`` while a rotation runs (see :func:`_prompt_gil`)."""


class SealEvents(Protocol):
    """What the seal loop tells the daemon. Called from the loop's thread, lock held."""

    def failed(self, exc: BaseException) -> None:
        """The loop died: the writer is unusable (the daemon stops, non-zero)."""
        ...

    def committed(self) -> None:
        """A group commit made everything sealed so far durable."""
        ...

    def rotated(self, prev: str, reason: str, epoch: int) -> None:
        """Segment ``prev`` was closed with checkpoint ``epoch``."""
        ...

    def checkpointed(self, cp: Checkpoint) -> None:
        """An epoch ended with checkpoint ``cp`` (its keys are erased)."""
        ...

    def retired(self, info: dict[str, object]) -> None:
        """Retention deleted a segment (the writer sealed ``retention.deleted`` first)."""
        ...

    def retention_blocked(self, blocked: Blocked) -> None:
        """Retention wants a segment gone that may not go yet (told once per cause)."""
        ...

    def disk_full(self, exc: DiskFullError) -> None:
        """A write was refused; what was sealed is held in memory."""
        ...

    def disk_ok(self, seconds: float) -> None:
        """Writes succeed again after ``seconds``; everything held is durable."""
        ...


class NoEvents:
    """A :class:`SealEvents` that ignores everything (subclass what you need)."""

    def failed(self, exc: BaseException) -> None:
        pass

    def committed(self) -> None:
        pass

    def rotated(self, prev: str, reason: str, epoch: int) -> None:
        pass

    def checkpointed(self, cp: Checkpoint) -> None:
        pass

    def retired(self, info: dict[str, object]) -> None:
        pass

    def retention_blocked(self, blocked: Blocked) -> None:
        pass

    def disk_full(self, exc: DiskFullError) -> None:
        pass

    def disk_ok(self, seconds: float) -> None:
        pass


@contextlib.contextmanager
def _prompt_gil() -> Iterator[None]:
    """Get the GIL back promptly after each blocking call of this thread.

    A rotation makes some thirty blocking calls (fsync, open, rename, ioctl...),
    each of which releases the GIL. When a source thread is busy parsing, taking
    it back costs a whole switch interval (5 ms by default) each time: measured,
    that was most of a rotation's pause under load. A short interval, for the
    few milliseconds of the rotation only, makes the other threads yield at once.
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, ROTATION_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(old)


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Per-bucket (not cumulative) counts of a latency: observed by one thread, read by any."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: list[float]) -> None:
        with self._lock:
            for v in values:
                self._counts[bisect.bisect_left(self.buckets, v)] += 1
                self._sum += v

    def snapshot(self) -> tuple[list[int], float]:
        """(per-bucket counts with +Inf last, sum); a consistent pair."""
        with self._lock:
            return list(self._counts), self._sum


@dataclass
class Stats:
    sealed: int = 0
    sealed_by_source: dict[str, int] = field(default_factory=dict)
    """Data records sealed per source; meta events are counted in ``sealed_meta``."""
    sealed_meta: int = 0
    bytes_sealed: int = 0
    seal_latency: Histogram = field(default_factory=Histogram)
    """Seconds from a batch entering the queue to the fsync that made it durable."""
    commits: int = 0
    last_commit_ns: int = 0
    last_checkpoint_epoch: int | None = None
    last_checkpoint_ns: int | None = None
    max_commit_latency_ns: int = 0
    """The longest group commit (write and fsync of what was sealed; sealing paused)."""
    max_seal_latency_ns: int = 0
    """The longest a record waited, from entering the queue to being durable."""
    rotations: int = 0
    max_rotation_pause_ns: int = 0
    """The longest time spent inside ``rotate_segment`` (sealing paused meanwhile), plus
    any wait for :attr:`SealLoop.io_gate` (the group commit before it is not included)."""
    last_rotation_pause_ns: int = 0
    rotation_pauses_ns: deque[int] = field(default_factory=lambda: deque(maxlen=PAUSES_KEPT))
    """The last rotation pauses, for :meth:`rotation_pause_ms`."""
    rotations_postponed: int = 0
    """Turns a due rotation waited for the compressor to finish a sync or a deletion."""
    retention_deleted: int = 0
    retention_deleted_bytes: int = 0
    disk_full_events: int = 0

    def rotation_pause_ms(self) -> dict[str, float]:
        """p50, p99 (of the last :data:`PAUSES_KEPT`) and max (of all) rotation pauses."""
        xs = sorted(self.rotation_pauses_ns)  # a copy made without releasing the GIL

        def at(q: float) -> float:
            return xs[min(len(xs) - 1, int(q * len(xs)))] / 1e6 if xs else 0.0

        return {"p50": at(0.5), "p99": at(0.99), "max": self.max_rotation_pause_ns / 1e6}


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """Rotate the open segment at ``max_bytes``, ``max_age_ns`` or ``max_epochs``."""

    max_bytes: int
    max_age_ns: int
    max_epochs: int | None = None

    def due(self, w: ArchiveWriter) -> str | None:
        """Why the open segment must be rotated now, or None (cheap: called per loop)."""
        if w.offset >= self.max_bytes:
            return "size"
        if (
            self.max_epochs is not None
            and w.sealer.epoch - w.segment_first_epoch >= self.max_epochs
        ):
            return "epochs"
        if w.clock.now_ns() - w.segment_opened_ns >= self.max_age_ns:
            return "age"
        return None


class _RetentionAndSpace:
    """Retention and a full disk, for :class:`SealLoop` (called with its lock held)."""

    writer: ArchiveWriter
    events: SealEvents
    retainer: Retainer | None
    reserve: Reserve | None
    stats: Stats
    lock: threading.Lock
    disk_full_since: float | None
    _need_free: int | None
    _last_retention: float
    _blocked: Blocked | None
    _mono: Callable[[], float]

    def request_retention(self, need_free: int | None = None) -> None:
        """Run retention at the next turn of the loop (``need_free``: the disk action)."""
        with self.lock:
            if need_free is not None:
                self._need_free = max(need_free, self._need_free or 0)
            self._last_retention = 0.0

    def _retain(self) -> None:
        """Retention under the lock: delete, report, and say what is blocked (once)."""
        assert self.retainer is not None
        need, self._need_free = self._need_free, None
        owed = self.reserve.missing if self.reserve is not None else 0
        self._last_retention = self._mono()
        try:
            done, blocked = self.retainer.run(self.writer, need_free=need, owed=owed)
        except DiskFullError:
            raise
        except (ArchiveError, OSError) as exc:
            # e.g. an immutable flag that this process may not lift: sealing goes on,
            # retention tries again at the next interval (an already sealed record
            # for a segment still present is accepted by verify, 16.3 case a)
            where = exc.where.get("file") if isinstance(exc, ArchiveError) else exc.filename
            done, blocked = [], Blocked(str(where or "?"), "error", f"retention failed: {exc}")
        for info in done:
            self.stats.retention_deleted += 1
            self.stats.retention_deleted_bytes += int(str(info["bytes"]))
            self.events.retired(info)
        if blocked is not None and blocked != self._blocked:
            self.events.retention_blocked(blocked)
        self._blocked = blocked

    def _disk_full(self, exc: DiskFullError) -> None:
        """A write was refused: hold everything sealed in memory until space returns."""
        if self.disk_full_since is None:
            self.disk_full_since = self._mono()
            self.stats.disk_full_events += 1
            self.events.disk_full(exc)

    def _wait_for_space(self) -> bool:
        """While the disk is full (lock held): free what the action allows, retry the write.

        Returns True once everything held in memory is durable again.
        """
        w = self.writer
        if self._need_free is not None and self.retainer is not None:
            # The deletion record must be durable before anything is deleted: give
            # back the reserve so that it (and the records before it) fit.
            if self.reserve is not None:
                self.reserve.release()
            try:
                w.flush(sync=True)
                self._retain()
            except DiskFullError:
                return False
        try:
            w.flush(sync=True)
        except DiskFullError:
            return False
        since = self.disk_full_since
        self.disk_full_since = None
        if since is not None:
            self.events.disk_ok(self._mono() - since)
        return True


class SealLoop(_RetentionAndSpace):
    """The seal loop's thread: drains the queue into the archive with group commits."""

    def __init__(
        self,
        writer: ArchiveWriter,
        queue: BatchQueue,
        events: SealEvents,
        *,
        commit_interval_ns: int,
        rotation: RotationPolicy | None = None,
        retainer: Retainer | None = None,
        retention_interval_ns: int = 60 * 10**9,
        reserve: Reserve | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.writer = writer
        self.queue = queue
        self.events = events
        self.rotation = rotation
        self.retainer = retainer
        self.retention_interval = retention_interval_ns / 1e9
        self.reserve = reserve
        self.clock = clock or SystemClock()
        self._mono = self.clock.monotonic
        self._last_retention = 0.0
        self._need_free: int | None = None
        self._blocked: Blocked | None = None
        self.suspended = threading.Event()
        """Set by the daemon's disk action ``suspend``: nothing is taken from the queue
        (sources wait on it), epochs still end so keys keep evolving."""
        self.disk_full_since: float | None = None
        self._dirty = False
        self._last_commit = self._mono()
        self._queued_at: list[float] = []  # of the batches sealed since the last fsync
        self.commit_interval = commit_interval_ns / 1e9
        self.stats = Stats()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditd-sealer", daemon=True)
        self.error: BaseException | None = None
        self.heartbeat = self._mono()
        self.lock = threading.Lock()
        """Held while the thread uses the writer: take it to read ``writer.positions``
        or to act on the writer (rotate) from another thread."""
        self.io_gate = threading.Lock()
        """Held for each rotation; the compressor holds it while it fsyncs, renames or
        deletes a file, so that their device work never lands inside a rotation pause.
        A rotation due by age or epochs waits for it by postponing (up to
        :data:`GATE_WAIT_MAX`); one due by size blocks (see :meth:`_take_gate`)."""
        self._gate_wait_since: float | None = None

    def _mono_ns(self) -> int:
        return int(self._mono() * 1e9)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def _seal_batches(self, batches: list[list[Item]]) -> int:
        w = self.writer
        n = 0
        stats = self.stats
        by = stats.sealed_by_source
        run: list[Fields] = []
        for batch in batches:
            if set(map(type, batch)) == _ONLY_FIELDS:  # the common batch, counted in C
                run.extend(cast("list[Fields]", batch))
                for src, k in Counter(map(_SOURCE, batch)).items():
                    by[src] = by.get(src, 0) + k
                n += len(batch)
                continue
            for item in batch:
                if isinstance(item, Fields):
                    run.append(item)
                    by[item.source] = by.get(item.source, 0) + 1
                    n += 1
                    continue
                if run:
                    self._append_run(run)
                    run = []
                if isinstance(item, MetaItem):
                    offset = w.offset
                    w.append_meta(item.event, item.message, item.attrs)
                    stats.bytes_sealed += max(0, w.offset - offset)
                    stats.sealed_meta += 1
                    n += 1
                    self._rotate_if_full()
                else:
                    item.done.set()
        if run:
            self._append_run(run)
        stats.sealed += n
        return n

    def _append_run(self, run: list[Fields]) -> None:
        """Seal data records, rotating as soon as the segment reaches ``max_bytes``.

        A segment thus closes within ``max_bytes`` plus one record, whatever the
        batch size: the run is sealed in chunks sure to fit (:mod:`sizebound`).
        """
        w = self.writer
        limit = self.rotation.max_bytes if self.rotation is not None else None
        i, n = 0, len(run)
        while i < n:
            j = n if limit is None or w.disk_full else sizebound.fitting(run, i, limit - w.offset)
            offset = w.offset
            w.append_many(run[i:j] if i or j < n else run)
            self.stats.bytes_sealed += max(0, w.offset - offset)
            if j < n:
                w.track_cut(run[j - 1])  # the state saved by a rotation names its position
            i = j
            self._rotate_if_full()

    def _rotate_if_full(self) -> None:
        """Rotate by size now (waiting for the compressor's gate, never postponing)."""
        w = self.writer
        if self.rotation is None or w.offset < self.rotation.max_bytes or w.disk_full:
            return
        self._dirty = True
        try:
            self.rotate("size")
        except DiskFullError as exc:
            self._disk_full(exc)  # the rest is sealed and held in memory; rotated later
        self._last_retention = 0.0  # retention runs at the end of this turn, as after any rotation

    def _turn(self, timed: list[tuple[float, list[Item]]], batches: list[list[Item]]) -> None:
        """One turn of the loop (lock held): seal, rotate, commit, retain, end the epoch."""
        if batches:
            self._seal_batches(batches)
            self._queued_at.extend(t for t, _ in timed)
            self._dirty = True
        now = self._mono()
        why = self.rotation.due(self.writer) if self.rotation is not None else None
        waited = self._take_gate(now) if why is not None else None
        if waited is None:
            why = None  # the compressor is syncing or deleting a file: rotate at a later turn
        try:
            if self._dirty and (
                now - self._last_commit >= self.commit_interval or not batches or why
            ):
                # Before a rotation too: what was sealed becomes durable in this turn's
                # group commit, and the rotation starts with nothing left to write back.
                self._commit(now)
            if why is not None:
                self._rotate(why, waited or 0)
        finally:
            if why is not None:
                self.io_gate.release()
        if self.retainer is not None and (
            why is not None
            or self._need_free is not None
            or now - self._last_retention >= self.retention_interval
        ):
            self._retain()
        cp = self.writer.maybe_end_epoch()
        if cp is not None:
            self.stats.last_checkpoint_epoch = cp.epoch
            self.stats.last_checkpoint_ns = cp.end
        self._report_checkpoints()

    def _commit(self, now: float) -> None:
        """The group commit: everything sealed so far is written and fsynced."""
        t0 = self._mono()
        self.writer.flush(sync=True)
        done = self._mono()
        st = self.stats
        waited = [done - t for t in self._queued_at]
        st.seal_latency.observe_many(waited)
        if waited:
            st.max_seal_latency_ns = max(st.max_seal_latency_ns, int(max(waited) * 1e9))
        st.max_commit_latency_ns = max(st.max_commit_latency_ns, int((done - t0) * 1e9))
        self._queued_at.clear()
        st.commits += 1
        st.last_commit_ns = self.clock.now_ns()
        self._dirty = False
        self._last_commit = now
        self.events.committed()

    def _take_gate(self, now: float) -> int | None:
        """Take :attr:`io_gate` for a due rotation: the ns waited for it, or None to postpone.

        While the compressor holds the gate a rotation due by age or epochs is
        postponed and sealing goes on, for at most :data:`GATE_WAIT_MAX`; after that,
        and at once for a rotation due by size (a segment closes within ``max_bytes``
        plus one record), the rotation waits for the gate (a wait that counts as part
        of its pause).
        """
        if self.io_gate.acquire(blocking=False):
            self._gate_wait_since = None
            return 0
        if self._gate_wait_since is None:
            self._gate_wait_since = now
        limit = self.rotation.max_bytes if self.rotation is not None else 0
        if now - self._gate_wait_since < GATE_WAIT_MAX and self.writer.offset < limit:
            self.stats.rotations_postponed += 1
            return None
        t0 = self._mono_ns()
        self.io_gate.acquire()
        self._gate_wait_since = None
        return self._mono_ns() - t0

    def _report_checkpoints(self) -> None:
        """Hand every checkpoint written since the last turn to the events."""
        cps = self.writer.checkpoints_written
        if cps:
            for c in cps:
                self.events.checkpointed(c)
            cps.clear()  # the daemon keeps none: one per epoch, for as long as it runs

    def _run(self) -> None:
        try:
            while True:
                self.heartbeat = self._mono()
                stopping = self._stop.is_set()
                if self.disk_full_since is not None:
                    with self.lock:
                        ok = self._wait_for_space()
                    if not ok:
                        if stopping:
                            break  # the daemon reports what could not be written
                        self._stop.wait(0.25)
                        continue
                if self.suspended.is_set() and not stopping:
                    with self.lock:
                        try:
                            self.writer.maybe_end_epoch()  # keys keep evolving meanwhile
                        except DiskFullError as exc:
                            self._disk_full(exc)
                    self._idle.set()
                    self._stop.wait(min(0.25, self.commit_interval))
                    continue
                timed = self.queue.get_timed(timeout=0 if stopping else self.commit_interval)
                batches = [b for _, b in timed]
                with self.lock:
                    try:
                        self._turn(timed, batches)
                    except DiskFullError as exc:
                        self._disk_full(exc)  # everything taken is sealed, held in memory
                if stopping and not batches:
                    break
                if not batches:
                    self._idle.set()
                else:
                    self._idle.clear()
        except BaseException as exc:  # surfaced to the daemon, which exits non-zero
            self.error = exc
            self.events.failed(exc)

    def rotate(self, reason: str) -> None:
        """Rotate the open segment now (call with :attr:`lock` held), timing the pause."""
        t0 = self._mono_ns()
        with self.io_gate:  # waits for a sync or a deletion of the compressor to end
            waited = self._mono_ns() - t0
            if self._dirty:
                self._commit(self._mono())
            self._rotate(reason, waited)

    def _rotate(self, reason: str, waited_ns: int) -> None:
        """Rotate (:attr:`io_gate` held after ``waited_ns``; what was sealed is committed)."""
        w = self.writer
        prev = w.segment
        t0 = self._mono_ns()
        with _prompt_gil():
            cp = w.rotate_segment(reason)
        pause = self._mono_ns() - t0 + waited_ns
        st = self.stats
        st.rotations += 1
        st.last_rotation_pause_ns = pause
        st.max_rotation_pause_ns = max(st.max_rotation_pause_ns, pause)
        st.rotation_pauses_ns.append(pause)
        st.last_checkpoint_epoch = cp.epoch
        st.last_checkpoint_ns = cp.end
        if prev is not None:
            self.events.rotated(prev, reason, cp.epoch)

    def idle(self) -> bool:
        return self._idle.is_set() and self.queue.depth() == 0

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called: the loop seals what is queued and ends."""
        return self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Seal everything queued, fsync, and stop (the caller closes the writer)."""
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout)
