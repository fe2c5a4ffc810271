"""Rate-limited meta events of the syslog source: one per interval, with a count."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Limited:
    """A meta event emitted at most once per ``interval``, carrying a count.

    ``emit(name, message, **fields)`` sends it (the server's meta-event hook).
    """

    def __init__(
        self, emit: Callable[..., None], name: str, message: str, interval: float = 1.0
    ) -> None:
        self.emit = emit
        self.name = name
        self.message = message
        self.interval = interval
        self.count = 0
        self.last = -1e18
        self.fields: dict[str, Any] = {}

    def note(self, n: int = 1, **fields: Any) -> None:
        self.count += n
        self.fields = fields
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.flush(now)

    def tick(self, now: float) -> None:
        if self.count and now - self.last >= self.interval:
            self.flush(now)

    def flush(self, now: float) -> None:
        if not self.count:
            return
        count, self.count = self.count, 0
        self.last = now
        self.emit(self.name, self.message, count=count, **self.fields)
