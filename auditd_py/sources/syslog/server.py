"""The syslog server: owns the listeners, the event loop thread and the intake;
implements the Source protocol (start, drain, stop, healthy, stats)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from typing import Final

from auditd_py import events
from auditd_py.clock import Clock
from auditd_py.config import SyslogSource
from auditd_py.contracts import Meta, Position, Sink
from auditd_py.errors import ConfigError
from auditd_py.sources.syslog.datagram import read_datagrams
from auditd_py.sources.syslog.intake import Intake
from auditd_py.sources.syslog.listener import (
    Listener,
    bind,
    bound_url,
    close_listeners,
    proc_drops,
    ssl_context,
)
from auditd_py.sources.syslog.stream import StreamConn
from auditd_py.sources.syslog_parse import STREAM_TRANSPORTS, parse_listen_url

STOP_READ_S: Final = 0.25
"""At stop, how long open connections may still be read (see ``_shutdown``)."""
LISTEN_BACKLOG: Final = 4096
ACCEPTS_PER_WAKEUP: Final = 64
"""asyncio accepts this many connections per wakeup (its ``backlog``); kept small so
that a burst of short connections is read and closed between bursts instead of
piling up against ``max_connections``. The kernel's queue is LISTEN_BACKLOG."""


class SyslogServer:
    """Implements :class:`auditd_py.sources.base.Source` for a ``syslog`` source."""

    def __init__(self, settings: SyslogSource, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self.addresses = [parse_listen_url(u) for u in settings.listen]
        if any(a.transport == "tls" for a in self.addresses) and settings.tls is None:
            raise ConfigError(
                f"syslog source {settings.name!r}: tls:// listeners need a tls: section",
                field="tls",
            )
        self.bound: list[str] = []
        """The listen URLs with the ports the kernel chose (for port 0)."""
        self._intake = Intake(
            self.name,
            clock,
            settings.max_message_bytes,
            settings.max_connections,
            framing=settings.framing,
            partial_s=settings.partial_timeout / 1e9,
            frame_s=settings.frame_timeout / 1e9,
            idle_s=(settings.idle_timeout or 0) / 1e9,
        )
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stopped = False

    # ------------------------------------------------------------ Source protocol

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        """Bind every listener (raising if one cannot be bound), then serve."""
        if self._thread is not None:
            raise RuntimeError("syslog server already started")
        intake = self._intake
        intake.sink = sink
        intake.meta = meta
        if self.settings.tls is not None and any(a.transport == "tls" for a in self.addresses):
            intake.ssl = ssl_context(self.name, self.settings.tls)
        self._open_listeners()
        self.bound = [lst.url for lst in self._listeners]
        loop = asyncio.new_event_loop()
        intake.loop = loop
        self._thread = threading.Thread(target=self._run, name=f"syslog-{self.name}", daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._setup(), loop)
        try:
            fut.result(timeout=10)
        except BaseException:
            self.stop()
            raise

    def drain(self) -> None:
        """Deliver every complete frame read so far (waiting up to 5 s for room)."""
        loop = self._intake.loop
        if loop is None or self._stopped:
            return
        fut = asyncio.run_coroutine_threadsafe(self._intake.drain(5.0), loop)
        with contextlib.suppress(TimeoutError):
            fut.result(timeout=6)

    def stop(self) -> None:
        """Close every socket, deliver what is buffered, remove unix socket files."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._intake.loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=3)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=3)
        close_listeners(self._listeners)

    def healthy(self) -> tuple[bool, str]:
        if self._thread is None:
            return False, "not started"
        if self._stopped:
            return False, "stopped"
        if not self._thread.is_alive():
            return False, "event loop thread died"
        for lst in self._listeners:
            if not lst.open or (lst.sock.fileno() < 0 and lst.server is None):
                return False, f"listener {lst.url} is closed"
            if lst.server is not None and not lst.server.is_serving():
                return False, f"listener {lst.url} is not serving"
        return True, ""

    def stats(self) -> dict[str, int]:
        intake = self._intake
        out = dict(intake.count)
        out["active_connections"] = len(intake.conns)
        out["paused"] = int(intake.paused)
        out["kernel_drops"] = self._kernel_drops()
        return out

    # ------------------------------------------------------------ setup and teardown

    def _open_listeners(self) -> None:
        """Bind every address; on any failure close what was bound and raise."""
        try:
            for addr in self.addresses:
                sock = bind(self.name, addr)
                try:
                    lst = Listener(self._intake.meta_event, addr, sock, bound_url(addr, sock))
                except BaseException:
                    sock.close()
                    raise
                self._listeners.append(lst)
                if addr.path:
                    lst.unix_inode = os.stat(addr.path).st_ino
        except BaseException:
            close_listeners(self._listeners)
            raise

    def _run(self) -> None:
        loop = self._intake.loop_
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._intake.on_loop_error)
        try:
            loop.run_forever()
        finally:
            # let aborted transports run their connection_lost and close their sockets
            for _ in range(3):
                loop.run_until_complete(asyncio.sleep(0))
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _setup(self) -> None:
        intake = self._intake
        loop = intake.loop_
        for lst in self._listeners:
            if lst.transport in STREAM_TRANSPORTS:

                def factory(lst: Listener = lst) -> StreamConn:
                    return StreamConn(intake, lst)

                if lst.addr.path:
                    lst.server = await loop.create_unix_server(
                        factory, sock=lst.sock, backlog=ACCEPTS_PER_WAKEUP
                    )
                else:
                    lst.server = await loop.create_server(
                        factory, sock=lst.sock, backlog=ACCEPTS_PER_WAKEUP
                    )
                lst.sock.listen(LISTEN_BACKLOG)
            else:
                loop.add_reader(lst.sock.fileno(), read_datagrams, intake, lst)
        self._tick_handle = loop.call_later(1.0, self._tick)

    async def _shutdown(self) -> None:
        intake = self._intake
        loop = intake.loop_
        intake.stopping = True
        for lst in self._listeners:
            if lst.server is not None:
                lst.server.close()
            else:
                loop.remove_reader(lst.sock.fileno())
                read_datagrams(intake, lst)  # what the kernel holds already
        # Read what the kernel already holds for open connections (unless the sink
        # is full): a few loop iterations, until one reads nothing, at most STOP_READ_S.
        deadline = time.monotonic() + STOP_READ_S
        while intake.conns and not intake.paused and time.monotonic() < deadline:
            reads = intake.reads
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if intake.reads == reads:
                break
        for conn in list(intake.conns):
            conn.close()
        for task in list(intake.tasks):
            task.cancel()
        for h in (self._tick_handle, intake.retry_handle):
            if h is not None:
                h.cancel()
        await asyncio.sleep(0)
        intake.flush()
        intake.put_backlog_at_stop(1.5)
        now = time.monotonic() + 1e9
        for lst in self._listeners:
            for lim in lst.limiters:
                lim.tick(now)
        intake.errors.tick(now)

    # ------------------------------------------------------------ housekeeping

    def _tick(self) -> None:
        now = time.monotonic()
        for lst in self._listeners:
            for lim in lst.limiters:
                lim.tick(now)
            if lst.transport == "udp":
                k = max(lst.kernel_drops, proc_drops(lst))
                if k > lst.kernel_reported:
                    self._intake.meta_event(
                        events.SYSLOG_DROPPED,
                        f"syslog listener {lst.url}: the kernel dropped datagrams",
                        listener=lst.url,
                        count=k - lst.kernel_reported,
                        kernel_drops=k,
                        reason="kernel receive buffer full",
                    )
                    lst.kernel_reported = k
        self._intake.errors.tick(now)
        self._close_idle()
        if not self._intake.stopping:
            self._tick_handle = self._intake.loop_.call_later(1.0, self._tick)

    def _close_idle(self) -> None:
        """Close the stream connections silent for ``idle_timeout`` (if set)."""
        intake = self._intake
        if intake.idle_s <= 0:
            return
        limit = intake.loop_.time() - intake.idle_s
        for conn in [c for c in intake.conns if c.last_active <= limit]:
            conn.shed(f"idle for {intake.idle_s:g}s (idle_timeout)")
            intake.count["idle_closed_connections"] += 1

    def _kernel_drops(self) -> int:
        total = 0
        for lst in self._listeners:
            if lst.transport == "udp":
                k = lst.kernel_drops
                if lst.open:
                    k = max(k, proc_drops(lst))
                total += k
        return total
