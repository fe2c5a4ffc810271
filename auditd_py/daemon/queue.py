"""The bounded queue between the sources and the seal loop.

Sources put batches (one source per batch); the daemon puts meta events and
barriers; the seal loop takes what is queued, a bounded amount at a time.
Bounded both in records and in bytes (what the records' messages hold): a
source of long lines waits for room as one of short lines does.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from auditd_py.clock import Clock, SystemClock
from auditd_py.contracts import MetaItem
from auditd_py.record import META_SOURCE, Fields


@dataclass(frozen=True, slots=True)
class Barrier:
    """Set by the sealer once every item queued before it is sealed.

    The daemon queues one after stopping a source: when it is set, the archive
    writer's positions include everything that source delivered.
    """

    done: threading.Event


Item = Fields | MetaItem | Barrier
"""What the queue holds: a record, a meta event, or a barrier."""

DEFAULT_BYTES = 32 * 1024 * 1024
"""The default bound in bytes (``sealing.queue_bytes``)."""
RECORD_OVERHEAD = 128
"""Bytes counted per record besides its message (attributes, the object itself)."""
TAKE_RECORDS = 8192
TAKE_BYTES = 8 * 1024 * 1024
"""What the seal loop takes at most at once (at least one batch): a bounded turn."""


def batch_bytes(batch: list[Any]) -> int:
    """What a batch counts against the queue's byte bound."""
    try:
        return RECORD_OVERHEAD * len(batch) + sum(len(f.message) for f in batch)
    except AttributeError:  # not all records: count only those that are
        return sum(RECORD_OVERHEAD + len(getattr(f, "message", b"")) for f in batch)


class BatchQueue:
    """A bounded FIFO of batches, counted in records and in bytes."""

    def __init__(
        self, capacity: int, clock: Clock | None = None, max_bytes: int = DEFAULT_BYTES
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._mono = (clock or SystemClock()).monotonic
        self._q: deque[tuple[float, list[Item], int, int]] = deque()
        """(queued at, batch, bytes counted, records counted)."""
        self._n = 0
        self._bytes = 0
        self.high_water_bytes = 0
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.high_water = 0
        self._read: dict[str, int] = {}
        """Records accepted per source (one update per batch: batches are per source)."""
        self.max_put_wait_ns = 0
        """The longest a producer's :meth:`put` waited for room (the ingestion gap it saw)."""

    def _waited(self, since: float) -> None:
        self.max_put_wait_ns = max(self.max_put_wait_ns, int((self._mono() - since) * 1e9))

    def put(self, batch: list[Any], *, block: bool = True, timeout: float | None = None) -> bool:
        if not batch:
            return True
        n = len(batch)
        b = batch_bytes(batch)
        with self._cv:
            if self._full(n, b):
                if not block:
                    return False
                since = self._mono()
                deadline = None if timeout is None else since + timeout
                while self._full(n, b) and not self._closed:
                    left = None if deadline is None else deadline - self._mono()
                    if left is not None and left <= 0:
                        self._waited(since)
                        return False
                    self._cv.wait(left)
                self._waited(since)
            self._q.append((self._mono(), batch, b, n))
            self._n += n
            self._bytes += b
            self.high_water = max(self.high_water, self._n)
            self.high_water_bytes = max(self.high_water_bytes, self._bytes)
            src = getattr(batch[0], "source", None)
            if isinstance(src, str):
                self._read[src] = self._read.get(src, 0) + n
            self._cv.notify_all()
            return True

    def _full(self, n: int, b: int) -> bool:
        """No room for ``n`` records of ``b`` bytes (an empty queue takes any batch)."""
        return bool(self._n) and (self._n + n > self.capacity or self._bytes + b > self.max_bytes)

    def put_meta(self, item: MetaItem) -> None:
        """Meta events are never refused (they are few and must not be lost)."""
        with self._cv:
            self._q.append((self._mono(), [item], 0, 1))
            self._n += 1
            self._read[META_SOURCE] = self._read.get(META_SOURCE, 0) + 1
            self._cv.notify_all()

    def put_barrier(self, barrier: Barrier) -> None:
        with self._cv:
            self._q.append((self._mono(), [barrier], 0, 0))
            self._cv.notify_all()

    def read_counts(self) -> dict[str, int]:
        """Records accepted so far, per source (``auditd-py`` for meta events)."""
        with self._cv:
            return dict(self._read)

    def room(self) -> int:
        with self._cv:
            return max(0, self.capacity - self._n)

    def depth(self) -> int:
        with self._cv:
            return self._n

    def get(self, timeout: float) -> list[list[Item]]:
        """What is queued now, up to a bounded amount (waiting up to ``timeout`` for any)."""
        return [b for _, b in self.get_timed(timeout)]

    def get_timed(self, timeout: float) -> list[tuple[float, list[Item]]]:
        """Like :meth:`get`, with the monotonic time each batch was queued at.

        At most :data:`TAKE_RECORDS` records or :data:`TAKE_BYTES` bytes (but at
        least one batch), in order: the rest waits for the next take.
        """
        out: list[tuple[float, list[Item]]] = []
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            n = b = 0
            q = self._q
            while q and (not out or (n + q[0][3] <= TAKE_RECORDS and b < TAKE_BYTES)):
                t, batch, size, count = q.popleft()
                out.append((t, batch))
                n += count
                b += size
            self._n -= n
            self._bytes -= b
            self._cv.notify_all()
            return out

    def wait_empty(self, timeout: float) -> bool:
        deadline = self._mono() + timeout
        with self._cv:
            while self._n:
                left = deadline - self._mono()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
