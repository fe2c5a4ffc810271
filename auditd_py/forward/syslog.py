"""Forwarding to a syslog collector: RFC 5424 over TCP or TLS, octet-counted.

Every sealed record goes out as one RFC 5424 message (RFC 6587 octet counting;
RFC 5425 for TLS) whose MSG is the **record line itself**, byte for byte, so
the collector's copy can be re-verified with the host's public key
(``auditd-py collect``, then ``verify``). The archive's identity
(``archive.json``) and every checkpoint are sent the same way. The
structured-data element ``[auditd@32473 …]`` carries what a collector needs
to file and deduplicate them without parsing the MSG: archive id, kind, seq,
epoch, and the record's link and MAC.

Acknowledgement. Plain syslog has no application-level acknowledgement (RFC
5424/6587/5425 define none; RELP does). What this forwarder waits for after
each batch is the strongest thing TCP offers: the batch written and the
socket's send queue empty (``SIOCOUTQ`` = 0), i.e. the collector's TCP stack
acknowledged every byte. Only then does the cursor move. A collector that
crashes after that but before writing to disk can still lose that batch:
that limit is the protocol's (docs/FORWARDING.md). Anything less (a reset,
a timeout) reconnects and resends from the cursor: at-least-once, duplicates
identified by (archive, seq).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import re
import select
import socket
import ssl
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path

from auditd_py import events as ev
from auditd_py.config import SyslogForward, split_listen
from auditd_py.contracts import Meta
from auditd_py.errors import ForwardError
from auditd_py.forward.base import (
    ArchiveInfo,
    Cursor,
    cursor_path,
    load_cursor,
    save_cursor,
)
from auditd_py.forward.tail import Durable, SealedTail
from auditd_py.store.layout import Layout

SD_ID = "auditd@32473"
"""The structured-data ID (32473 is the documentation enterprise number, RFC 5612)."""
PROBATION_S = 0.25
"""How long a new connection must stay open after its first batch was acknowledged."""
PRI_RECORD = 16 * 8 + 6  # local0.info
PRI_META = 16 * 8 + 5  # local0.notice: identity and checkpoints
_HOST_BAD = re.compile(r"[^\x21-\x7e]")


def _sd_value(v: str) -> str:
    """RFC 5424 PARAM-VALUE escaping: ``"``, ``\\`` and ``]``."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _host(name: str) -> str:
    h = _HOST_BAD.sub("_", name)[:255]
    return h or "-"


def frame(msg: bytes) -> bytes:
    """RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(msg), msg)


class SyslogForwarder:
    """One collector; implements :class:`~auditd_py.forward.base.Forwarder`."""

    kind = "syslog"

    def __init__(
        self,
        settings: SyslogForward,
        layout: Layout,
        info: ArchiveInfo,
        state_dir: Path,
        durable: Durable,
        head: Callable[[], int],
        meta: Meta,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.layout = layout
        self.info = info
        self.meta = meta
        self.head = head
        scheme, rest = settings.target.split("://", 1)
        self.tls = scheme == "tls"
        self.host, self.port = split_listen(rest)
        self.path = cursor_path(state_dir, settings.name)
        self.cursor: Cursor = load_cursor(self.path, info.archive)
        self.tail = SealedTail(layout, durable)
        self._sock: socket.socket | None = None
        self._fresh = False
        """No batch on the current connection has passed its probation yet."""
        self._ctx = self._tls_context() if self.tls else None
        self._hostname = _host(info.host)
        self.sent_bytes = 0
        base = " ".join(f'{k}="{_sd_value(v)}"' for k, v in self._base("record").items())
        self._rec_pri = f"<{PRI_RECORD}>1 ".encode()
        self._rec_mid = f' {self._hostname} auditd-py - record [{SD_ID} {base} seq="'.encode()

    # ------------------------------------------------------------ connection

    def _tls_context(self) -> ssl.SSLContext:
        t = self.settings.tls
        assert t is not None
        try:
            ctx = ssl.create_default_context(cafile=str(t.ca) if t.ca else None)
            if t.cert is not None and t.key is not None:
                ctx.load_cert_chain(str(t.cert), str(t.key))
        except (OSError, ssl.SSLError) as exc:
            raise ForwardError(f"{self.name}: cannot load TLS files: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            if not self._peer_closed(self._sock):
                return self._sock
            self._drop()
        timeout = self.settings.ack_timeout / 1e9
        try:
            raw = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise ForwardError(
                f"cannot connect to {self.settings.target}: {exc.strerror or exc}"
            ) from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if self._ctx is not None:
            t = self.settings.tls
            name = (t.server_name if t is not None else None) or self.host
            try:
                sock = self._ctx.wrap_socket(raw, server_hostname=name)
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                raise ForwardError(
                    f"TLS handshake with {self.settings.target} failed: {exc}"
                ) from exc
        self._sock = sock
        self._fresh = True
        return sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """The collector closed (or reset) the connection since the last batch."""
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            if isinstance(sock, ssl.SSLSocket):
                # Readable may be TLS 1.3 session tickets only: read without blocking.
                timeout = sock.gettimeout()
                sock.setblocking(False)
                try:
                    return sock.recv(1) == b""  # collectors send no data: EOF or an alert
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return False
                finally:
                    sock.settimeout(timeout)
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ssl.SSLError):
            return True

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None

    def _wait_acked(self, sock: socket.socket) -> None:
        """Until the collector's TCP stack acknowledged every byte (SIOCOUTQ == 0)."""
        deadline = time.monotonic() + self.settings.ack_timeout / 1e9
        buf = bytearray(4)
        delay = 0.0005
        while True:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
            if struct.unpack("i", buf)[0] == 0:
                if self._fresh:
                    self._probation(sock)
                return
            if self._peer_closed(sock):
                raise ForwardError(f"{self.settings.target} closed the connection mid-batch")
            if time.monotonic() > deadline:
                raise ForwardError(
                    f"{self.settings.target} did not acknowledge a batch within "
                    f"{self.settings.ack_timeout / 1e9:g}s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _probation(self, sock: socket.socket) -> None:
        """The first batch on a new connection counts only if the collector keeps it open.

        A collector that rejects us after the handshake (a client certificate it
        does not accept, a peer name it does not permit) closes the connection
        within milliseconds, possibly after its kernel acknowledged the batch.
        """
        deadline = time.monotonic() + PROBATION_S
        while time.monotonic() < deadline:
            if self._peer_closed(sock):
                raise ForwardError(
                    f"{self.settings.target} closed the new connection: the collector "
                    "rejected it (client certificate, permitted peers?)"
                )
            time.sleep(0.01)
        self._fresh = False

    # ------------------------------------------------------------ messages

    def _message(self, pri: int, ts: str, kind: str, params: dict[str, str], msg: bytes) -> bytes:
        sd = " ".join(f'{k}="{_sd_value(v)}"' for k, v in params.items())
        head = f"<{pri}>1 {ts} {self._hostname} auditd-py - {kind} [{SD_ID} {sd}] "
        return frame(head.encode() + msg)

    def _base(self, kind: str) -> dict[str, str]:
        return {"archive": self.info.archive, "env": self.info.environment, "kind": kind}

    def _record(self, seq: int, line: bytes) -> bytes:
        """One record's message; the hot path, so built from precomputed bytes."""
        i = line.find(b'"ts":"', 0, 200)
        ts = line[i + 6 : i + 32] + b"Z" if i > 0 and line[i + 35 : i + 37] == b'Z"' else b"-"
        j = line.find(b',"epoch":', 0, 40) + 9
        k = line.find(b",", j, j + 21)
        epoch = line[j:k] if j > 8 and k > j else b"-"
        if len(line) > 148:
            seal = line[-148:]
            link, mac = seal[9:73], seal[82:146]
        else:
            link = mac = b"-"
        msg = b"".join(
            (
                self._rec_pri,
                ts,
                self._rec_mid,
                b"%d" % seq,
                b'" epoch="',
                epoch,
                b'" link="',
                link,
                b'" mac="',
                mac,
                b'"] ',
                line,
            )
        )
        return b"%d %s" % (len(msg), msg)

    def _identity(self) -> bytes:
        return self._message(
            PRI_META, "-", "identity", self._base("identity"), self.info.identity.rstrip(b"\n")
        )

    def _checkpoints(self) -> list[tuple[int, bytes]]:
        """Checkpoint files from the cursor's epoch on, in order, as messages."""
        out: list[tuple[int, bytes]] = []
        e = self.cursor.checkpoint
        while len(out) < self.settings.batch_records:
            path = self.layout.checkpoint(e)
            try:
                line = path.read_bytes().rstrip(b"\n")
            except FileNotFoundError:
                break
            params = self._base("checkpoint")
            params["epoch"] = str(e)
            out.append((e, self._message(PRI_META, "-", "checkpoint", params, line)))
            e += 1
        return out

    # ------------------------------------------------------------ the protocol

    def step(self) -> int:
        c = self.cursor
        batch = self.tail.read(c.segment, c.offset, self.settings.batch_records)
        if batch.skipped is not None:
            self.meta.event(
                ev.FORWARD_GAP,
                f"{self.name}: segment {batch.skipped} was deleted before it was forwarded; "
                f"continuing at {batch.segment}",
                target=self.name,
                segment=batch.skipped,
            )
        frames: list[bytes] = []
        if not c.identity_sent:
            frames.append(self._identity())
        frames.extend(self._record(seq, line) for seq, line in batch.lines)
        cps = self._checkpoints()
        frames.extend(m for _, m in cps)
        moved = (batch.segment, batch.offset) != (c.segment, c.offset)
        if not frames:
            if moved:  # only crossed into the next segment
                c.segment, c.offset = batch.segment, batch.offset
                save_cursor(self.path, c)
            return 0
        sock = self._connect()
        data = b"".join(frames)
        try:
            sock.sendall(data)
            self._wait_acked(sock)
        except ForwardError:
            self._drop()
            self.tail.close()
            raise
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            self.tail.close()
            reason = errno.errorcode.get(exc.errno or 0, "") if isinstance(exc, OSError) else ""
            raise ForwardError(
                f"sending to {self.settings.target} failed: {reason or exc}"
            ) from exc
        self.sent_bytes += len(data)
        c.identity_sent = True
        if batch.lines:
            c.seq = batch.lines[-1][0] + 1
        c.segment, c.offset = batch.segment, batch.offset
        if cps:
            c.checkpoint = cps[-1][0] + 1
        save_cursor(self.path, c)
        return len(frames)

    def floor(self) -> int | None:
        return self.cursor.seq

    def lag(self) -> dict[str, int]:
        return {"records": max(0, self.head() - self.cursor.seq)}

    def close(self) -> None:
        self._drop()
        self.tail.close()
