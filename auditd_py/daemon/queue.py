"""The bounded queue between the sources and the seal loop.

Sources put batches (one source per batch); the daemon puts meta events and
barriers; the seal loop takes everything queued at once. Counted in records.
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


class BatchQueue:
    """A bounded FIFO of batches, counted in records."""

    def __init__(self, capacity: int, clock: Clock | None = None) -> None:
        self.capacity = capacity
        self._mono = (clock or SystemClock()).monotonic
        self._q: deque[tuple[float, list[Item]]] = deque()
        self._n = 0
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
        with self._cv:
            if self._n and self._n + n > self.capacity:
                if not block:
                    return False
                since = self._mono()
                deadline = None if timeout is None else since + timeout
                while self._n and self._n + n > self.capacity and not self._closed:
                    left = None if deadline is None else deadline - self._mono()
                    if left is not None and left <= 0:
                        self._waited(since)
                        return False
                    self._cv.wait(left)
                self._waited(since)
            self._q.append((self._mono(), batch))
            self._n += n
            self.high_water = max(self.high_water, self._n)
            src = getattr(batch[0], "source", None)
            if isinstance(src, str):
                self._read[src] = self._read.get(src, 0) + n
            self._cv.notify_all()
            return True

    def put_meta(self, item: MetaItem) -> None:
        """Meta events are never refused (they are few and must not be lost)."""
        with self._cv:
            self._q.append((self._mono(), [item]))
            self._n += 1
            self._read[META_SOURCE] = self._read.get(META_SOURCE, 0) + 1
            self._cv.notify_all()

    def put_barrier(self, barrier: Barrier) -> None:
        with self._cv:
            self._q.append((self._mono(), [barrier]))
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
        """Everything queued now (waiting up to ``timeout`` for something)."""
        return [b for _, b in self.get_timed(timeout)]

    def get_timed(self, timeout: float) -> list[tuple[float, list[Item]]]:
        """Like :meth:`get`, with the monotonic time each batch was queued at."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            out = list(self._q)
            self._q.clear()
            self._n = 0
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
