"""Admission of records into the sink: batching, back-pressure and the counters.

Everything read in one loop iteration goes out together (at most :data:`BATCH`
records per put). When the sink is full, every stream connection stops reading
until the backlog is accepted; datagrams cannot be pushed back: they are dropped
and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

from auditd_py import events
from auditd_py.clock import Clock
from auditd_py.contracts import Meta, Sink
from auditd_py.record import Fields
from auditd_py.sources.syslog.limits import Limited
from auditd_py.sources.syslog.listener import Listener
from auditd_py.sources.syslog_parse import Frame, frame_fields

if TYPE_CHECKING:
    import ssl

BATCH: Final = 512
"""Records per ``sink.put``."""
RETRY_S: Final = 0.01
"""How often a full sink is retried while stream connections are paused."""

COUNTERS: Final = (
    "received",
    "bytes",
    "parse_errors",
    "dropped",
    "kernel_drops",
    "connections",
    "active_connections",
    "rejected_connections",
    "shed_connections",
    "idle_closed_connections",
    "partial",
    "tls_errors",
    "oversize",
    "truncated",
    "paused",
    "errors",
)


class Pausable(Protocol):
    """A stream connection as the intake, the server's stop and its housekeeping
    see it (``StreamConn``)."""

    last_active: float
    """Loop time of the last bytes read (or of the connection)."""

    def shed(self, reason: str) -> None:
        """Deliver what is buffered (flagged truncated), close, and seal why."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class Intake:
    """The event loop's side of one syslog source: what the listeners and the
    connections share, and the way their records reach the sink."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        max_bytes: int,
        max_conns: int,
        *,
        framing: str = "auto",
        partial_s: float = 1.0,
        frame_s: float = 10.0,
        idle_s: float = 0.0,
    ) -> None:
        self.name = name
        self.clock = clock
        self.max_bytes = max_bytes
        self.max_conns = max_conns
        self.framing = framing
        self.partial_s = partial_s
        """A stream frame unfinished after this long idle is sealed ``partial``."""
        self.frame_s = frame_s
        """… and one unfinished this long after its first bytes (a slow sender)."""
        self.idle_s = idle_s
        """A connection silent this long is closed (0: never)."""
        self.count: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.conns: set[Pausable] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ssl: ssl.SSLContext | None = None
        self.sink: Sink | None = None
        self.meta: Meta | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Fields] = []
        self._dgram_pending: list[tuple[Listener, list[Fields]]] = []
        self.backlog: deque[list[Fields]] = deque()
        self._flush_handle: asyncio.Handle | None = None
        self.retry_handle: asyncio.TimerHandle | None = None
        self.paused = False
        self.reads = 0
        self.stopping = False
        self.errors = Limited(self.meta_event, events.SOURCE_ERROR, f"syslog source {name}: error")

    @property
    def loop_(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None
        return self.loop

    def meta_event(self, name: str, message: str, **fields: Any) -> None:
        meta = self.meta
        if meta is None:
            return
        with contextlib.suppress(Exception):  # the meta-log must never take the server down
            meta.event(name, message, source=self.name, **fields)

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        self.count["errors"] += 1
        self.errors.note(error=str(exc) if exc is not None else str(ctx.get("message", "")))

    # ------------------------------------------------------------ delivery

    def records(
        self, frames: list[Frame], lst: Listener, base: dict[str, Any], out: list[Fields]
    ) -> None:
        """Frames → records appended to ``out``, counted."""
        now = self.clock.now_ns()
        name = self.name
        nbytes = errors = 0
        err: str | None = None
        count = self.count
        for fr in frames:
            rec, e = frame_fields(fr, time_ns=now, source=name, base=base)
            out.append(rec)
            nbytes += len(fr.data)
            if e is not None:
                errors += 1
                err = e
            if fr.oversize is not None:
                count["oversize"] += 1
            if fr.truncated:
                count["truncated"] += 1
        count["received"] += len(frames)
        count["bytes"] += nbytes
        if errors:
            count["parse_errors"] += errors
            lst.parse_errors.note(errors, listener=lst.url, peer=base.get("peer", ""), reason=err)

    def deliver(self, frames: list[Frame], lst: Listener, base: dict[str, Any]) -> None:
        """Stream frames → pending records (flushed once per loop iteration)."""
        self.records(frames, lst, base, self._pending)
        if self._flush_handle is None:
            self._flush_handle = self.loop_.call_soon(self.flush)

    def deliver_datagrams(self, lst: Listener, recs: list[Fields]) -> None:
        """Datagram records → put once per loop iteration, dropped if the sink is full."""
        self._dgram_pending.append((lst, recs))
        if self._flush_handle is None and self.loop is not None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        sink = self.sink
        assert sink is not None
        if self._pending:
            recs, self._pending = self._pending, []
            for i in range(0, len(recs), BATCH):
                self.backlog.append(recs[i : i + BATCH])
        backlog = self.backlog
        while backlog and sink.put(backlog[0], block=False):
            backlog.popleft()
        if self._dgram_pending:
            for lst, recs in self._dgram_pending:
                for i in range(0, len(recs), BATCH):
                    chunk = recs[i : i + BATCH]
                    if not sink.put(chunk, block=False):
                        self.count["dropped"] += len(chunk)
                        lst.drops.note(len(chunk), listener=lst.url, reason="sink full")
            self._dgram_pending.clear()
        if backlog:
            if not self.paused:
                self.paused = True
                for conn in self.conns:
                    conn.pause()
            if self.retry_handle is None and not self.stopping:
                self.retry_handle = self.loop_.call_later(RETRY_S, self._retry)
        elif self.paused:
            self.paused = False
            for conn in list(self.conns):
                conn.resume()

    def _retry(self) -> None:
        self.retry_handle = None
        self.flush()

    async def drain(self, timeout: float) -> None:
        await asyncio.sleep(0)
        deadline = time.monotonic() + timeout
        self.flush()
        while self.backlog and time.monotonic() < deadline:
            await asyncio.sleep(RETRY_S)
            self.flush()

    def put_backlog_at_stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the sink to take the backlog; report what it did not."""
        deadline = time.monotonic() + timeout
        sink = self.sink
        assert sink is not None
        while self.backlog:
            left = deadline - time.monotonic()
            if left <= 0 or not sink.put(self.backlog[0], block=True, timeout=left):
                break
            self.backlog.popleft()
        if self.backlog:
            lost = sum(len(b) for b in self.backlog)
            self.backlog.clear()
            self.meta_event(
                events.SOURCE_ERROR,
                f"syslog source {self.name}: sink full at stop, records not delivered",
                lost=lost,
            )
