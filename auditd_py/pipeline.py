"""sources → bounded queue → sealer → archive.

One sealer thread owns the :class:`~auditd_py.store.writer.ArchiveWriter`. It
takes batches from the queue, seals them, and makes them durable with a group
commit (one fsync per ``commit_interval`` at most, never per line). It also
ends epochs on time even when no record arrives, so an idle archive still gets
its checkpoints and its keys still evolve.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from auditd_py.record import Fields
from auditd_py.store.writer import ArchiveWriter


@dataclass(frozen=True, slots=True)
class MetaItem:
    """A meta-log event to seal in order with the data."""

    event: str
    message: str
    attrs: dict[str, Any]


Item = Fields | MetaItem


class BatchQueue:
    """A bounded FIFO of batches, counted in records."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[list[Item]] = deque()
        self._n = 0
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.high_water = 0

    def put(self, batch: list[Any], *, block: bool = True, timeout: float | None = None) -> bool:
        if not batch:
            return True
        n = len(batch)
        with self._cv:
            if self._n and self._n + n > self.capacity:
                if not block:
                    return False
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._n and self._n + n > self.capacity and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cv.wait(left)
            self._q.append(batch)
            self._n += n
            self.high_water = max(self.high_water, self._n)
            self._cv.notify_all()
            return True

    def put_meta(self, item: MetaItem) -> None:
        """Meta events are never refused (they are few and must not be lost)."""
        with self._cv:
            self._q.append([item])
            self._n += 1
            self._cv.notify_all()

    def room(self) -> int:
        with self._cv:
            return max(0, self.capacity - self._n)

    def depth(self) -> int:
        with self._cv:
            return self._n

    def get(self, timeout: float) -> list[list[Item]]:
        """Everything queued now (waiting up to ``timeout`` for something)."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            out = list(self._q)
            self._q.clear()
            self._n = 0
            self._cv.notify_all()
            return out

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


@dataclass
class Stats:
    sealed: int = 0
    sealed_by_source: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    last_commit_ns: int = 0
    last_checkpoint_epoch: int | None = None
    last_checkpoint_ns: int | None = None
    max_commit_latency_ns: int = 0


class Sealer:
    """The sealer thread: drains the queue into the archive with group commits."""

    def __init__(
        self,
        writer: ArchiveWriter,
        queue: BatchQueue,
        *,
        commit_interval_ns: int,
        on_error: Callable[[BaseException], None],
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.writer = writer
        self.queue = queue
        self.commit_interval = commit_interval_ns / 1e9
        self.on_error = on_error
        self.on_commit = on_commit
        self.stats = Stats()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditd-sealer", daemon=True)
        self.error: BaseException | None = None
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def _seal_batches(self, batches: list[list[Item]]) -> int:
        w = self.writer
        n = 0
        by = self.stats.sealed_by_source
        run: list[Fields] = []
        for batch in batches:
            for item in batch:
                if isinstance(item, MetaItem):
                    if run:
                        w.append_many(run)
                        run = []
                    w.append_meta(item.event, item.message, item.attrs)
                else:
                    run.append(item)
                    by[item.source] = by.get(item.source, 0) + 1
                n += 1
        if run:
            w.append_many(run)
        self.stats.sealed += n
        return n

    def _run(self) -> None:
        dirty = False
        last_commit = time.monotonic()
        try:
            while True:
                self.heartbeat = time.monotonic()
                stopping = self._stop.is_set()
                batches = self.queue.get(timeout=0 if stopping else self.commit_interval)
                if batches:
                    self._seal_batches(batches)
                    dirty = True
                now = time.monotonic()
                if dirty and (now - last_commit >= self.commit_interval or not batches):
                    self.writer.flush(sync=True)
                    self.stats.commits += 1
                    self.stats.last_commit_ns = time.time_ns()
                    dirty = False
                    last_commit = now
                    if self.on_commit is not None:
                        self.on_commit()
                cp = self.writer.maybe_end_epoch()
                if cp is not None:
                    self.stats.last_checkpoint_epoch = cp.epoch
                    self.stats.last_checkpoint_ns = cp.end
                if stopping and not batches:
                    break
                if not batches:
                    self._idle.set()
                else:
                    self._idle.clear()
        except BaseException as exc:  # surfaced to the service, which exits non-zero
            self.error = exc
            self.on_error(exc)

    def idle(self) -> bool:
        return self._idle.is_set() and self.queue.depth() == 0

    def stop(self, timeout: float = 30.0) -> None:
        """Seal everything queued, fsync, and stop (the caller closes the writer)."""
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout)
