"""The syslog source: UDP, TCP, TLS (RFC 5425), unix datagram and unix stream.

One asyncio event loop runs in the server's own thread and serves every
listener of the source. Frames are parsed by :mod:`auditd_py.sources.syslog_parse`
and put into the sink in batches: everything read in one loop iteration goes
out together (at most :data:`BATCH` records per put).

Back-pressure: when the sink is full, every stream connection stops reading
until the backlog is accepted, so the kernel's TCP window pushes back on the
senders and nothing is lost. Datagrams cannot be pushed back: they are dropped
and counted (``SYSLOG_DROPPED``), and the kernel's own drop counter for UDP is
read (``SO_RXQ_OVFL`` and ``/proc/self/net/udp``) into :meth:`SyslogServer.stats`.

Meta events (parse errors, drops, connection limit, TLS failures) are rate
limited to one per second per listener and kind, each carrying the ``count``
of occurrences it stands for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from auditd_py import events
from auditd_py.clock import Clock
from auditd_py.config import SyslogSource
from auditd_py.contracts import Meta, Position, Sink
from auditd_py.errors import ConfigError
from auditd_py.record import Fields
from auditd_py.sources.syslog_parse import (
    STREAM_TRANSPORTS,
    Frame,
    Framer,
    HoldBudget,
    ListenAddress,
    datagram_frames,
    frame_fields,
    parse_listen_url,
)

BATCH: Final = 512
"""Records per ``sink.put``."""
HOLD_BUDGET: Final = 64 * 1024 * 1024
"""Bytes that oversize stream frames may hold, over all connections (see Framer)."""
RETRY_S: Final = 0.01
"""How often a full sink is retried while stream connections are paused."""
HANDSHAKE_TIMEOUT_S: Final = 10.0
STOP_READ_S: Final = 0.25
"""At stop, how long open connections may still be read (see ``_shutdown``)."""
LISTEN_BACKLOG: Final = 4096
ACCEPTS_PER_WAKEUP: Final = 64
"""asyncio accepts this many connections per wakeup (its ``backlog``); kept small so
that a burst of short connections is read and closed between bursts instead of
piling up against ``max_connections``. The kernel's queue is LISTEN_BACKLOG."""
UDP_BUFSIZE: Final = 65536
UNIX_DGRAM_BUFSIZE: Final = 256 * 1024
RCVBUF: Final = 4 * 1024 * 1024
DGRAMS_PER_WAKEUP: Final = 256
SO_RXQ_OVFL: Final = 40  # Linux; not exported by the socket module
_UCRED: Final = struct.Struct("3i")

COUNTERS: Final = (
    "received",
    "bytes",
    "parse_errors",
    "dropped",
    "kernel_drops",
    "connections",
    "active_connections",
    "rejected_connections",
    "tls_errors",
    "oversize",
    "truncated",
    "paused",
    "errors",
)


class _Limited:
    """A meta event emitted at most once per ``interval``, carrying a count."""

    def __init__(self, srv: SyslogServer, name: str, message: str, interval: float = 1.0) -> None:
        self.srv = srv
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
        self.srv._meta_event(self.name, self.message, count=count, **self.fields)


class _Listener:
    def __init__(
        self, srv: SyslogServer, addr: ListenAddress, sock: socket.socket, url: str
    ) -> None:
        self.addr = addr
        self.transport = addr.transport
        self.sock = sock
        self.url = url
        """The listen URL with the port actually bound."""
        self.server: asyncio.AbstractServer | None = None
        self.open = True
        self.unix_inode: int | None = None
        self.kernel_drops = 0  # from SO_RXQ_OVFL
        self.kernel_reported = 0
        self.inode = os.fstat(sock.fileno()).st_ino
        self.buf = bytearray(
            0
            if addr.transport in STREAM_TRANSPORTS
            else UNIX_DGRAM_BUFSIZE
            if addr.path
            else UDP_BUFSIZE
        )
        what = f"syslog listener {self.url}"
        self.parse_errors = _Limited(srv, events.SYSLOG_PARSE_ERROR, f"{what}: unparsable frames")
        self.drops = _Limited(srv, events.SYSLOG_DROPPED, f"{what}: datagrams dropped")
        self.limit = _Limited(srv, events.SYSLOG_LIMIT, f"{what}: connection refused")
        self.tls = _Limited(srv, events.SYSLOG_TLS_ERROR, f"{what}: TLS handshake failed")
        self.limiters = (self.parse_errors, self.drops, self.limit, self.tls)


def _inet_peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr) if addr else ""


def _cred_attrs(pid: int, uid: int, gid: int, base: dict[str, Any]) -> None:
    base["peer"] = f"pid={pid} uid={uid} gid={gid}"
    base["cred"] = {"pid": pid, "uid": uid, "gid": gid}


class _Conn(asyncio.Protocol):
    """One stream connection (tcp, tls, unix-stream)."""

    def __init__(self, srv: SyslogServer, lst: _Listener) -> None:
        self.srv = srv
        self.lst = lst
        self.transport: asyncio.Transport | None = None
        self.framer: Framer | None = None
        self.base: dict[str, Any] = {}
        self.handshaking = False
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        srv = self.srv
        lst = self.lst
        assert isinstance(transport, asyncio.Transport)
        if srv._stopping or len(srv._conns) >= srv._max_conns:
            self.done = True
            transport.abort()
            srv._count["rejected_connections"] += 1
            lst.limit.note(
                listener=lst.url,
                limit=srv._max_conns,
                peer=_inet_peer(transport.get_extra_info("peername")),
            )
            return
        self.transport = transport
        srv._conns.add(self)
        srv._count["connections"] += 1
        base: dict[str, Any] = {"transport": lst.transport}
        if lst.transport == "unix-stream":
            sock = transport.get_extra_info("socket")
            try:
                pid, uid, gid = _UCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
                )
                _cred_attrs(pid, uid, gid, base)
            except (OSError, AttributeError, struct.error):
                base["peer"] = lst.addr.path
        else:
            base["peer"] = _inet_peer(transport.get_extra_info("peername"))
        self.base = base
        self.framer = Framer(
            srv._max_bytes, nul_delimits=lst.transport == "unix-stream", budget=srv._budget
        )
        if lst.transport == "tls":
            self.handshaking = True
            transport.pause_reading()
            task = srv._loop_.create_task(self._handshake(transport))
            srv._tasks.add(task)
            task.add_done_callback(srv._tasks.discard)
        elif srv._paused:
            transport.pause_reading()

    async def _handshake(self, raw: asyncio.Transport) -> None:
        srv = self.srv
        assert srv._ssl is not None
        try:
            tls = await srv._loop_.start_tls(
                raw, self, srv._ssl, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
        except Exception as exc:  # any handshake failure is the peer's, never ours to crash on
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            srv._count["tls_errors"] += 1
            self.lst.tls.note(listener=self.lst.url, peer=self.base.get("peer", ""), reason=reason)
            raw.abort()
            self._finish(deliver=False)
            return
        self.handshaking = False
        if tls is None or self.done:
            return
        self.transport = tls
        ssl_obj = tls.get_extra_info("ssl_object")
        cert = ssl_obj.getpeercert() if ssl_obj is not None else None
        if cert:
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        self.base["tls_peer"] = value
        if srv._paused:
            tls.pause_reading()

    def pause(self) -> None:
        if self.transport is not None and not self.handshaking:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.handshaking and not self.done:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.done or self.framer is None:
            return
        self.srv._reads += 1
        frames = self.framer.feed(data)
        if frames:
            self.srv._deliver(frames, self.lst, self.base)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(deliver=True)

    def _finish(self, *, deliver: bool) -> None:
        if self.done:
            return
        self.done = True
        self.srv._conns.discard(self)
        if self.framer is not None:
            frames = self.framer.eof()  # also releases any held budget
            if deliver and frames:
                self.srv._deliver(frames, self.lst, self.base)

    def close(self) -> None:
        """Server stop: deliver what is buffered (flagged truncated) and abort."""
        transport = self.transport
        self._finish(deliver=True)
        if transport is not None:
            transport.abort()


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
        self._max_bytes = settings.max_message_bytes
        self._max_conns = settings.max_connections
        self._count: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._listeners: list[_Listener] = []
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._budget = HoldBudget(HOLD_BUDGET)
        self._ssl: ssl.SSLContext | None = None
        self._sink: Sink | None = None
        self._meta: Meta | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: list[Fields] = []
        self._dgram_pending: list[tuple[_Listener, list[Fields]]] = []
        self._backlog: deque[list[Fields]] = deque()
        self._flush_handle: asyncio.Handle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._paused = False
        self._reads = 0
        self._stopping = False
        self._stopped = False
        self._errors = _Limited(self, events.SOURCE_ERROR, f"syslog source {self.name}: error")

    # ------------------------------------------------------------ Source protocol

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        """Bind every listener (raising if one cannot be bound), then serve."""
        if self._thread is not None:
            raise RuntimeError("syslog server already started")
        self._sink = sink
        self._meta = meta
        if self.settings.tls is not None and any(a.transport == "tls" for a in self.addresses):
            self._ssl = self._ssl_context()
        try:
            for addr in self.addresses:
                sock = self._bind(addr)
                try:
                    lst = _Listener(self, addr, sock, self._bound_url(addr, sock))
                except BaseException:
                    sock.close()
                    raise
                self._listeners.append(lst)
                if addr.path:
                    lst.unix_inode = os.stat(addr.path).st_ino
        except BaseException:
            self._close_listeners()
            raise
        self.bound = [lst.url for lst in self._listeners]
        loop = asyncio.new_event_loop()
        self._loop = loop
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
        if self._loop is None or self._stopped:
            return
        fut = asyncio.run_coroutine_threadsafe(self._drain(5.0), self._loop)
        with contextlib.suppress(TimeoutError):
            fut.result(timeout=6)

    def stop(self) -> None:
        """Close every socket, deliver what is buffered, remove unix socket files."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=3)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=3)
        self._close_listeners()

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
        out = dict(self._count)
        out["active_connections"] = len(self._conns)
        out["paused"] = int(self._paused)
        out["kernel_drops"] = self._kernel_drops()
        return out

    # ------------------------------------------------------------ setup and teardown

    def _ssl_context(self) -> ssl.SSLContext:
        tls = self.settings.tls
        assert tls is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
            if tls.ca is not None:
                ctx.load_verify_locations(cafile=tls.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"syslog source {self.name!r}: cannot load TLS certificate/key/CA: {exc}",
                field="tls",
            ) from exc
        if tls.client_auth != "none" and tls.ca is None:
            raise ConfigError(
                f"syslog source {self.name!r}: client_auth {tls.client_auth} needs tls.ca",
                field="tls.ca",
            )
        ctx.verify_mode = {
            "none": ssl.CERT_NONE,
            "optional": ssl.CERT_OPTIONAL,
            "required": ssl.CERT_REQUIRED,
        }[tls.client_auth]
        return ctx

    def _bind(self, addr: ListenAddress) -> socket.socket:
        stream = addr.transport in STREAM_TRANSPORTS
        kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
        if addr.path:
            self._remove_stale(addr.path, kind)
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.bind(addr.path)
                os.chmod(addr.path, 0o666)  # noqa: S103 - like /dev/log: any local process may log
                if not stream:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            except OSError as exc:
                sock.close()
                raise ConfigError(
                    f"syslog source {self.name!r}: cannot bind {addr.url()}: {exc.strerror}",
                    field="listen",
                ) from exc
        else:
            try:
                infos = socket.getaddrinfo(addr.host, addr.port, type=kind, flags=socket.AI_PASSIVE)
            except socket.gaierror as exc:
                raise ConfigError(
                    f"syslog source {self.name!r}: cannot resolve {addr.host!r}: {exc}",
                    field="listen",
                ) from exc
            family, _, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                if stream:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
            except OSError as exc:
                sock.close()
                raise ConfigError(
                    f"syslog source {self.name!r}: cannot bind {addr.url()}: {exc.strerror}",
                    field="listen",
                ) from exc
            if not stream:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if not stream:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
        return sock

    def _remove_stale(self, path: str, kind: socket.SocketKind) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(
                f"syslog source {self.name!r}: {path} exists and is not a socket", field="listen"
            )
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # left over by a process that is gone
            return
        except OSError:
            return  # bind will report it
        finally:
            probe.close()
        raise ConfigError(
            f"syslog source {self.name!r}: {path} is in use by another process", field="listen"
        )

    def _bound_url(self, addr: ListenAddress, sock: socket.socket) -> str:
        if addr.path:
            return addr.url()
        name = sock.getsockname()
        return ListenAddress(addr.transport, host=str(name[0]), port=int(name[1])).url()

    def _close_listeners(self) -> None:
        for lst in self._listeners:
            lst.open = False
            with contextlib.suppress(OSError):
                lst.sock.close()
            if lst.addr.path and lst.unix_inode is not None:
                with contextlib.suppress(OSError):
                    if os.lstat(lst.addr.path).st_ino == lst.unix_inode:
                        os.unlink(lst.addr.path)
                lst.unix_inode = None

    @property
    def _loop_(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _run(self) -> None:
        loop = self._loop_
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._on_loop_error)
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
        loop = self._loop_
        for lst in self._listeners:
            if lst.transport in STREAM_TRANSPORTS:

                def factory(lst: _Listener = lst) -> _Conn:
                    return _Conn(self, lst)

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
                loop.add_reader(lst.sock.fileno(), self._read_dgram, lst)
        self._tick_handle = loop.call_later(1.0, self._tick)

    async def _shutdown(self) -> None:
        loop = self._loop_
        self._stopping = True
        for lst in self._listeners:
            if lst.server is not None:
                lst.server.close()
            else:
                loop.remove_reader(lst.sock.fileno())
                self._read_dgram(lst)  # what the kernel holds already
        # Read what the kernel already holds for open connections (unless the sink
        # is full): a few loop iterations, until one reads nothing, at most STOP_READ_S.
        deadline = time.monotonic() + STOP_READ_S
        while self._conns and not self._paused and time.monotonic() < deadline:
            reads = self._reads
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if self._reads == reads:
                break
        for conn in list(self._conns):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        for h in (self._tick_handle, self._retry_handle):
            if h is not None:
                h.cancel()
        await asyncio.sleep(0)
        self._flush()
        deadline = time.monotonic() + 1.5
        sink = self._sink
        assert sink is not None
        while self._backlog:
            left = deadline - time.monotonic()
            if left <= 0 or not sink.put(self._backlog[0], block=True, timeout=left):
                break
            self._backlog.popleft()
        if self._backlog:
            lost = sum(len(b) for b in self._backlog)
            self._backlog.clear()
            self._meta_event(
                events.SOURCE_ERROR,
                f"syslog source {self.name}: sink full at stop, records not delivered",
                lost=lost,
            )
        now = time.monotonic() + 1e9
        for lst in self._listeners:
            for lim in lst.limiters:
                lim.tick(now)
        self._errors.tick(now)

    async def _drain(self, timeout: float) -> None:
        await asyncio.sleep(0)
        deadline = time.monotonic() + timeout
        self._flush()
        while self._backlog and time.monotonic() < deadline:
            await asyncio.sleep(RETRY_S)
            self._flush()

    # ------------------------------------------------------------ delivery

    def _records(
        self, frames: list[Frame], lst: _Listener, base: dict[str, Any], out: list[Fields]
    ) -> None:
        """Frames → records appended to ``out``, counted."""
        now = self.clock.now_ns()
        name = self.name
        nbytes = errors = 0
        err: str | None = None
        count = self._count
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

    def _deliver(self, frames: list[Frame], lst: _Listener, base: dict[str, Any]) -> None:
        """Stream frames → pending records (flushed once per loop iteration)."""
        self._records(frames, lst, base, self._pending)
        if self._flush_handle is None:
            self._flush_handle = self._loop_.call_soon(self._flush)

    def _read_dgram(self, lst: _Listener) -> None:
        sock = lst.sock
        unix = lst.transport == "unix"
        buf = lst.buf
        view = memoryview(buf)
        recs: list[Fields] = []
        for _ in range(DGRAMS_PER_WAKEUP):
            try:
                n, anc, flags, addr = sock.recvmsg_into([buf], 256)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if not self._stopping:
                    self._count["errors"] += 1
                    self._errors.note(listener=lst.url, error=str(exc))
                break
            base: dict[str, Any] = {"transport": lst.transport}
            for level, kind, data in anc:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == SO_RXQ_OVFL and len(data) >= 4:
                    lst.kernel_drops = max(lst.kernel_drops, int.from_bytes(data[:4], "little"))
                elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
                    pid, uid, gid = _UCRED.unpack(data[: _UCRED.size])
                    _cred_attrs(pid, uid, gid, base)
            if "peer" not in base:
                if not unix:
                    base["peer"] = _inet_peer(addr)
                elif addr:
                    base["peer"] = str(addr)
            if n == 0:
                continue
            frames = datagram_frames(
                bytes(view[:n]), self._max_bytes, truncated=bool(flags & socket.MSG_TRUNC)
            )
            self._records(frames, lst, base, recs)
        if recs:
            self._dgram_pending.append((lst, recs))
            if self._flush_handle is None and self._loop is not None:
                self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        sink = self._sink
        assert sink is not None
        if self._pending:
            recs, self._pending = self._pending, []
            for i in range(0, len(recs), BATCH):
                self._backlog.append(recs[i : i + BATCH])
        backlog = self._backlog
        while backlog and sink.put(backlog[0], block=False):
            backlog.popleft()
        if self._dgram_pending:
            for lst, recs in self._dgram_pending:
                for i in range(0, len(recs), BATCH):
                    chunk = recs[i : i + BATCH]
                    if not sink.put(chunk, block=False):
                        self._count["dropped"] += len(chunk)
                        lst.drops.note(len(chunk), listener=lst.url, reason="sink full")
            self._dgram_pending.clear()
        if backlog:
            if not self._paused:
                self._paused = True
                for conn in self._conns:
                    conn.pause()
            if self._retry_handle is None and not self._stopping:
                self._retry_handle = self._loop_.call_later(RETRY_S, self._retry)
        elif self._paused:
            self._paused = False
            for conn in list(self._conns):
                conn.resume()

    def _retry(self) -> None:
        self._retry_handle = None
        self._flush()

    # ------------------------------------------------------------ housekeeping

    def _tick(self) -> None:
        now = time.monotonic()
        for lst in self._listeners:
            for lim in lst.limiters:
                lim.tick(now)
            if lst.transport == "udp":
                k = max(lst.kernel_drops, self._proc_drops(lst))
                if k > lst.kernel_reported:
                    self._meta_event(
                        events.SYSLOG_DROPPED,
                        f"syslog listener {lst.url}: the kernel dropped datagrams",
                        listener=lst.url,
                        count=k - lst.kernel_reported,
                        kernel_drops=k,
                        reason="kernel receive buffer full",
                    )
                    lst.kernel_reported = k
        self._errors.tick(now)
        if not self._stopping:
            self._tick_handle = self._loop_.call_later(1.0, self._tick)

    def _proc_drops(self, lst: _Listener) -> int:
        """The drops column of /proc/self/net/udp{,6} for this socket (0 if unknown).

        /proc/self/net stays visible under systemd's ProcSubset=pid; /proc/net does not.
        """
        ino = str(lst.inode)
        for name in ("/proc/self/net/udp", "/proc/self/net/udp6"):
            try:
                with open(name, "rb") as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) > 12 and parts[9] == ino.encode():
                            return int(parts[12])
            except (OSError, ValueError):
                continue
        return 0

    def _kernel_drops(self) -> int:
        total = 0
        for lst in self._listeners:
            if lst.transport == "udp":
                k = lst.kernel_drops
                if lst.open:
                    k = max(k, self._proc_drops(lst))
                total += k
        return total

    def _meta_event(self, name: str, message: str, **fields: Any) -> None:
        meta = self._meta
        if meta is None:
            return
        with contextlib.suppress(Exception):  # the meta-log must never take the server down
            meta.event(name, message, source=self.name, **fields)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        self._count["errors"] += 1
        self._errors.note(error=str(exc) if exc is not None else str(ctx.get("message", "")))
