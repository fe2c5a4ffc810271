"""The listening sockets: binding (inet and unix, stale unix sockets), TLS context,
removal at stop, and the kernel's UDP drop counter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterable
from typing import Final

from auditd_py import events
from auditd_py.config import TLSSettings
from auditd_py.errors import ConfigError
from auditd_py.sources.syslog.limits import Limited
from auditd_py.sources.syslog_parse import STREAM_TRANSPORTS, ListenAddress

UDP_BUFSIZE: Final = 65536
UNIX_DGRAM_BUFSIZE: Final = 256 * 1024
RCVBUF: Final = 4 * 1024 * 1024
SO_RXQ_OVFL: Final = 40  # Linux; not exported by the socket module


class Listener:
    def __init__(
        self,
        emit: Callable[..., None],
        addr: ListenAddress,
        sock: socket.socket,
        url: str,
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
        self.parse_errors = Limited(emit, events.SYSLOG_PARSE_ERROR, f"{what}: unparsable frames")
        self.drops = Limited(emit, events.SYSLOG_DROPPED, f"{what}: datagrams dropped")
        self.limit = Limited(emit, events.SYSLOG_LIMIT, f"{what}: connection refused")
        self.tls = Limited(emit, events.SYSLOG_TLS_ERROR, f"{what}: TLS handshake failed")
        self.limiters = (self.parse_errors, self.drops, self.limit, self.tls)


def ssl_context(name: str, tls: TLSSettings) -> ssl.SSLContext:
    """The server-side TLS context of source ``name``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls.ca is not None:
            ctx.load_verify_locations(cafile=tls.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"syslog source {name!r}: cannot load TLS certificate/key/CA: {exc}",
            field="tls",
        ) from exc
    if tls.client_auth != "none" and tls.ca is None:
        raise ConfigError(
            f"syslog source {name!r}: client_auth {tls.client_auth} needs tls.ca",
            field="tls.ca",
        )
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[tls.client_auth]
    return ctx


def bind(name: str, addr: ListenAddress) -> socket.socket:
    """A bound, non-blocking socket for ``addr`` (of source ``name``); ConfigError if not."""
    stream = addr.transport in STREAM_TRANSPORTS
    kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
    if addr.path:
        _remove_stale(name, addr.path, kind)
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.bind(addr.path)
            os.chmod(addr.path, 0o666)  # noqa: S103 - like /dev/log: any local process may log
            if not stream:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"syslog source {name!r}: cannot bind {addr.url()}: {exc.strerror}",
                field="listen",
            ) from exc
    else:
        try:
            infos = socket.getaddrinfo(addr.host, addr.port, type=kind, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ConfigError(
                f"syslog source {name!r}: cannot resolve {addr.host!r}: {exc}",
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
                f"syslog source {name!r}: cannot bind {addr.url()}: {exc.strerror}",
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


def _remove_stale(name: str, path: str, kind: socket.SocketKind) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(
            f"syslog source {name!r}: {path} exists and is not a socket", field="listen"
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
        f"syslog source {name!r}: {path} is in use by another process", field="listen"
    )


def bound_url(addr: ListenAddress, sock: socket.socket) -> str:
    """The listen URL with the port the kernel chose (for port 0)."""
    if addr.path:
        return addr.url()
    name = sock.getsockname()
    return ListenAddress(addr.transport, host=str(name[0]), port=int(name[1])).url()


def close_listeners(listeners: Iterable[Listener]) -> None:
    """Close the sockets and remove the unix socket files that are still ours."""
    for lst in listeners:
        lst.open = False
        with contextlib.suppress(OSError):
            lst.sock.close()
        if lst.addr.path and lst.unix_inode is not None:
            with contextlib.suppress(OSError):
                if os.lstat(lst.addr.path).st_ino == lst.unix_inode:
                    os.unlink(lst.addr.path)
            lst.unix_inode = None


def proc_drops(lst: Listener) -> int:
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
