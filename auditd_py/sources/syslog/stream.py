"""One stream connection (tcp, tls, unix-stream): admission against
``max_connections`` (the idlest connection is shed for a new one), the peer,
the TLS handshake, RFC 6587 framing and the timers that seal an unfinished
frame (``partial``)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any, Final

from auditd_py import events
from auditd_py.sources.syslog.intake import Intake
from auditd_py.sources.syslog.listener import Listener
from auditd_py.sources.syslog.peer import UCRED, cred_attrs, inet_peer
from auditd_py.sources.syslog_parse import Framer

HANDSHAKE_TIMEOUT_S: Final = 10.0
SHED_READ_MAX: Final = 8 * 1024 * 1024
"""What is read from the kernel, at most, of a connection about to be shed."""


class StreamConn(asyncio.Protocol):
    """One stream connection (tcp, tls, unix-stream)."""

    def __init__(self, intake: Intake, lst: Listener) -> None:
        self.intake = intake
        self.lst = lst
        self.transport: asyncio.Transport | None = None
        self.framer: Framer | None = None
        self.base: dict[str, Any] = {}
        self.handshaking = False
        self.done = False
        self.last_active = 0.0
        """Loop time of the last bytes read (or of the connection)."""
        self.frame_since: float | None = None
        """Loop time when the unfinished frame in the framer began to wait."""
        self.idle_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        intake = self.intake
        lst = self.lst
        assert isinstance(transport, asyncio.Transport)
        if intake.stopping:
            self.done = True
            transport.abort()
            intake.count["rejected_connections"] += 1
            return
        if len(intake.conns) >= intake.max_conns:
            # fair admission: the idlest connection makes room for the new sender
            victim = min(intake.conns, key=lambda c: c.last_active)
            victim.shed(f"max_connections {intake.max_conns} reached: idlest connection shed")
            intake.count["shed_connections"] += 1
        self.transport = transport
        self.last_active = intake.loop_.time()
        intake.conns.add(self)
        intake.count["connections"] += 1
        self.base = self._peer_attrs(transport)
        self.framer = Framer(intake.max_bytes, framing=intake.framing)
        if lst.transport == "tls":
            self.handshaking = True
            transport.pause_reading()
            task = intake.loop_.create_task(self._handshake(transport))
            intake.tasks.add(task)
            task.add_done_callback(intake.tasks.discard)
        elif intake.paused:
            transport.pause_reading()

    def _peer_attrs(self, transport: asyncio.Transport) -> dict[str, Any]:
        """``transport`` and ``peer`` (with ``cred`` on a unix stream) of every record."""
        lst = self.lst
        base: dict[str, Any] = {"transport": lst.transport}
        if lst.transport == "unix-stream":
            sock = transport.get_extra_info("socket")
            try:
                pid, uid, gid = UCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
                )
                cred_attrs(pid, uid, gid, base)
            except (OSError, AttributeError, struct.error):
                base["peer"] = lst.addr.path
        else:
            base["peer"] = inet_peer(transport.get_extra_info("peername"))
        return base

    async def _handshake(self, raw: asyncio.Transport) -> None:
        intake = self.intake
        assert intake.ssl is not None
        try:
            tls = await intake.loop_.start_tls(
                raw, self, intake.ssl, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
        except Exception as exc:  # any handshake failure is the peer's, never ours to crash on
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            intake.count["tls_errors"] += 1
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
        if intake.paused:
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
        intake = self.intake
        intake.reads += 1
        frames = self.framer.feed(data)
        if frames:
            intake.deliver(frames, self.lst, self.base)
        now = self.last_active = intake.loop_.time()
        if not self.framer.pending():
            self.frame_since = None
        elif self.frame_since is None:
            self.frame_since = now
            if self.idle_handle is None:
                wait = min(intake.partial_s, intake.frame_s)
                self.idle_handle = intake.loop_.call_at(now + wait, self._idle)

    def _idle(self) -> None:
        """Seal an unfinished frame (``partial``) once the sender has been idle
        ``partial_s`` inside it, or it has waited ``frame_s`` (a slow sender)."""
        self.idle_handle = None
        framer = self.framer
        if self.done or framer is None or self.frame_since is None:
            return
        intake = self.intake
        loop = intake.loop_
        now = loop.time()
        due = min(self.last_active + intake.partial_s, self.frame_since + intake.frame_s)
        if intake.paused:  # we are not reading: the sender is neither idle nor slow
            self.frame_since = now
            due = now + intake.partial_s
        if now < due:
            self.idle_handle = loop.call_at(due, self._idle)
            return
        frames = framer.idle()
        self.frame_since = None
        if framer.pending():  # digits of an octet count wait for the rest
            self.frame_since = now
            self.idle_handle = loop.call_at(now + intake.partial_s, self._idle)
        if frames:
            intake.count["partial"] += 1
            intake.deliver(frames, self.lst, self.base)

    def shed(self, reason: str) -> None:
        """Close this connection to make room or because it was silent too long:
        what it sent is read and delivered (the last frame flagged truncated),
        then the connection is closed and the reason sealed with the peer."""
        intake = self.intake
        fields = {} if self._read_rest() else {"unread": True}
        intake.meta_event(
            events.SYSLOG_LIMIT,
            f"syslog listener {self.lst.url}: connection closed",
            listener=self.lst.url,
            peer=self.base.get("peer", ""),
            reason=reason,
            **fields,
        )
        self.close()

    def _read_rest(self) -> bool:
        """Read what the kernel holds for this connection (tcp, unix-stream; up to
        SHED_READ_MAX), so that shedding it loses nothing it sent so far. Returns
        whether all of it was read."""
        if self.lst.transport == "tls" or self.transport is None or self.framer is None:
            return self.lst.transport != "tls"
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        left = SHED_READ_MAX
        while left > 0:
            try:
                data = os.read(sock.fileno(), min(left, 256 * 1024))
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return True  # reset by the peer: nothing more to read
            if not data:
                return True
            left -= len(data)
            frames = self.framer.feed(data)
            if frames:
                self.intake.deliver(frames, self.lst, self.base)
        return False

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(deliver=True)

    def _finish(self, *, deliver: bool) -> None:
        if self.done:
            return
        self.done = True
        self.intake.conns.discard(self)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.framer is not None:
            frames = self.framer.eof()
            if deliver and frames:
                self.intake.deliver(frames, self.lst, self.base)

    def close(self) -> None:
        """Server stop: deliver what is buffered (flagged truncated) and abort."""
        transport = self.transport
        self._finish(deliver=True)
        if transport is not None:
            transport.abort()
