"""Reading the datagram listeners (udp, unix): one frame per datagram, the
sender's credentials, the kernel's drop count (SO_RXQ_OVFL)."""

from __future__ import annotations

import socket
from typing import Any, Final

from auditd_py.record import Fields
from auditd_py.sources.syslog.intake import Intake
from auditd_py.sources.syslog.listener import SO_RXQ_OVFL, Listener
from auditd_py.sources.syslog.peer import UCRED, cred_attrs, inet_peer
from auditd_py.sources.syslog_parse import datagram_frames

DGRAMS_PER_WAKEUP: Final = 256


def read_datagrams(intake: Intake, lst: Listener) -> None:
    """Read what ``lst`` holds (at most DGRAMS_PER_WAKEUP) and hand it to ``intake``."""
    sock = lst.sock
    buf = lst.buf
    view = memoryview(buf)
    recs: list[Fields] = []
    for _ in range(DGRAMS_PER_WAKEUP):
        try:
            n, anc, flags, addr = sock.recvmsg_into([buf], 256)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            if not intake.stopping:
                intake.count["errors"] += 1
                intake.errors.note(listener=lst.url, error=str(exc))
            break
        base = _sender_attrs(lst, anc, addr)
        if n == 0:
            continue
        frames = datagram_frames(
            bytes(view[:n]), intake.max_bytes, truncated=bool(flags & socket.MSG_TRUNC)
        )
        intake.records(frames, lst, base, recs)
    if recs:
        intake.deliver_datagrams(lst, recs)


def _sender_attrs(lst: Listener, anc: list[tuple[int, int, bytes]], addr: Any) -> dict[str, Any]:
    """``transport`` and ``peer`` of one datagram; notes the kernel's drop count."""
    base: dict[str, Any] = {"transport": lst.transport}
    for level, kind, data in anc:
        if level != socket.SOL_SOCKET:
            continue
        if kind == SO_RXQ_OVFL and len(data) >= 4:
            lst.kernel_drops = max(lst.kernel_drops, int.from_bytes(data[:4], "little"))
        elif kind == socket.SCM_CREDENTIALS and len(data) >= UCRED.size:
            pid, uid, gid = UCRED.unpack(data[: UCRED.size])
            cred_attrs(pid, uid, gid, base)
    if "peer" not in base:
        if lst.transport != "unix":
            base["peer"] = inet_peer(addr)
        elif addr:
            base["peer"] = str(addr)
    return base
