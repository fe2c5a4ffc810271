"""The syslog source against the senders QA hosts really run, started here:
util-linux logger (every mode), Python's SysLogHandler with default settings,
rsyslog relaying with each built-in forwarding template, syslog-ng relaying in
both its formats. For each: PRI, facility, severity, the timestamp's instant,
host, app, pid, msgid and message are what the sender was asked to send, and
each message is exactly one record.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditd_py.clock import SystemClock
from auditd_py.config import SyslogSource
from auditd_py.record import Fields
from auditd_py.sources.syslog import SyslogServer
from auditd_py.sources.syslog_parse import parse_listen_url
from tests.support.syslog import LOGGER, RSYSLOGD, free_port
from tests.support.syslog_peers import (
    JOURNALD,
    SYSLOG_NG,
    Collect,
    NullMeta,
    Relay,
    in_namespace_of,
    instant,
    journald_argv,
    syslog_ng_argv,
)

pytestmark = pytest.mark.integration

HOST = socket.gethostname()
PROBE = b"probe relay"
Serve = Callable[..., tuple[SyslogServer, Collect]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[SyslogServer] = []

    def make(listen: list[str], **kw: Any) -> tuple[SyslogServer, Collect]:
        srv = SyslogServer(
            SyslogSource(name="syslog", type="syslog", listen=listen, **kw), SystemClock()
        )
        sink = Collect()
        srv.start(sink, NullMeta(), {})
        servers.append(srv)
        return srv, sink

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    started: list[Relay] = []
    yield started
    for r in started:
        r.stop()


def port_of(srv: SyslogServer) -> int:
    return parse_listen_url(srv.bound[0]).port


def expect(
    rec: Fields,
    *,
    pri: int,
    sent: float,
    message: str,
    host: str | None = None,
    app: str | None = None,
    pid: str | None = None,
    msgid: str | None = None,
    flags: tuple[str, ...] = (),
) -> None:
    """One record against what its sender was asked to send."""
    assert rec.attrs is not None
    assert "parse_error" not in rec.attrs
    sl = rec.attrs["syslog"]
    assert (sl["pri"], sl["facility"], sl["severity"]) == (pri, pri >> 3, pri & 7)
    got = (sl.get("hostname"), sl.get("app"), sl.get("procid"), sl.get("msgid"))
    assert got == (host, app, pid, msgid)
    assert rec.message == message.encode()
    at = instant(sl["timestamp"], sent) if "timestamp" in sl else rec.time_ns / 1e9
    assert abs(at - sent) < 3, (sl.get("timestamp"), sent)
    for flag in ("pri_inferred", "timestamp_lenient", "timestamp_unparsed", "tag_lenient"):
        assert bool(sl.get(flag)) == (flag in flags), (flag, sl)
    assert ("timestamp" not in sl) == bool(sl.get("timestamp_inferred"))


def exactly_once(sink: Collect, texts: list[str]) -> list[Fields]:
    """Each text is exactly one record (and nothing else came, but relay probes)."""
    sink.wait(lambda recs: all(any(r.message == t.encode() for r in recs) for t in texts))
    recs = [r for r in sink.settle() if PROBE not in r.message]
    assert sorted(r.message for r in recs) == sorted(t.encode() for t in texts)
    return [next(r for r in recs if r.message == t.encode()) for t in texts]


def logger(*args: str, stdin: bytes | None = None) -> float:
    assert LOGGER is not None
    t = time.time()
    subprocess.run([LOGGER, *args], input=stdin, check=True, timeout=20, capture_output=True)
    return t


# ---------------------------------------------------------------- util-linux logger

LOGGER_MODES = {
    "udp-rfc5424": ("udp", ["-d", "--rfc5424"]),
    "udp-rfc5424-notime-notq": ("udp", ["-d", "--rfc5424=notime,notq"]),
    "udp-rfc3164": ("udp", ["-d", "--rfc3164"]),
    "tcp-rfc5424-lf": ("tcp", ["-T", "--rfc5424"]),
    "tcp-rfc5424-octet-count": ("tcp", ["-T", "--rfc5424", "--octet-count"]),
    "tcp-rfc3164-lf": ("tcp", ["-T", "--rfc3164"]),
    "tcp-rfc3164-octet-count": ("tcp", ["-T", "--rfc3164", "--octet-count"]),
}


@pytest.mark.parametrize("mode", list(LOGGER_MODES))
def test_logger_over_the_network(serve: Serve, mode: str) -> None:
    transport, opts = LOGGER_MODES[mode]
    srv, sink = serve([f"{transport}://127.0.0.1:0"])
    texts = [f"{mode} message {i} grüße" for i in range(3)]
    sent = 0.0
    for text in texts:
        sent = logger(
            "-n", "127.0.0.1", "-P", str(port_of(srv)), *opts, "-p", "local3.warning",
            "-t", "interop", "--id=4242", "--msgid", "MID7", text,
        )  # fmt: skip
    rfc5424 = any(o.startswith("--rfc5424") for o in opts)
    for rec in exactly_once(sink, texts):
        expect(
            rec, pri=19 * 8 + 4, sent=sent, message=rec.message.decode(), host=HOST,
            app="interop", pid="4242", msgid="MID7" if rfc5424 else None,
        )  # fmt: skip


@pytest.mark.parametrize("kind", ["unix", "unix-stream"])
def test_logger_unix_sockets(serve: Serve, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "log.sock"
    srv, sink = serve([f"{kind}://{path}"])
    opt = "-d" if kind == "unix" else "-T"
    texts = [f"{kind} local {i}" for i in range(3)]
    sent = logger(
        "-u", str(path), opt, "--socket-errors=on", "-p", "mail.err", "-t", "loc", "--id=77",
        stdin="\n".join(texts).encode() + b"\n",
    )  # fmt: skip
    for rec in exactly_once(sink, texts):
        # logger's local format is glibc's: no HOSTNAME
        expect(rec, pri=2 * 8 + 3, sent=sent, message=rec.message.decode(), app="loc", pid="77")
    assert srv.stats()["parse_errors"] == 0


def test_logger_octet_count_size_100000(serve: Serve) -> None:
    """An honest octet count above max_message_bytes: consumed exactly, in pieces,
    and the next octet-counted frame on the same connection keeps its framing."""
    srv, sink = serve(["tcp://127.0.0.1:0"])  # max_message_bytes: 64 KiB
    big = "".join(chr(0x41 + i % 26) for i in range(100_000 - 200))
    sent = logger(
        "-n", "127.0.0.1", "-P", str(port_of(srv)), "-T", "--octet-count", "--size", "100000",
        "--rfc5424", "-t", "big", "--id=5", "--msgid", "BIG",
        stdin=(big + "\nafter the big one\n").encode(),
    )  # fmt: skip
    recs = sink.wait(lambda r: any(x.message == b"after the big one" for x in r))
    recs = sink.settle()
    first, *conts, after = recs
    assert first.attrs is not None
    frame = first.attrs["raw"].encode() + b"".join(c.message for c in conts)
    assert first.attrs["oversize"] == len(frame)
    assert frame.endswith(big.encode())
    assert all(c.attrs is not None and c.attrs["continuation"] for c in conts)
    assert len(conts) == -(-len(frame) // (64 * 1024)) - 1
    expect(first, pri=13, sent=sent, message=first.message.decode(), host=HOST, app="big",
           pid="5", msgid="BIG")  # fmt: skip
    expect(after, pri=13, sent=sent, message="after the big one", host=HOST, app="big", pid="5",
           msgid="BIG")  # fmt: skip
    assert srv.stats()["parse_errors"] == 0


# ---------------------------------------------------------------- Python's SysLogHandler


def _py_logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"interop.{id(handler)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    return log


@pytest.mark.parametrize("kind", ["udp", "tcp", "unix", "unix-stream"])
def test_python_sysloghandler_defaults(serve: Serve, tmp_path: Path, kind: str) -> None:
    """Default settings: no header, no ident, a NUL after each message (and over
    TCP no LF): each message one record while the connection stays open."""
    path = tmp_path / "py.sock"
    if kind.startswith("unix"):
        srv, sink = serve([f"{kind}://{path}"])
        handler = logging.handlers.SysLogHandler(address=str(path))
    else:
        srv, sink = serve([f"{kind}://127.0.0.1:0"])
        socktype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        handler = logging.handlers.SysLogHandler(("127.0.0.1", port_of(srv)), socktype=socktype)
    try:
        log = _py_logger(handler)
        texts = [f"python {kind} {i}" for i in range(3)] + [f"python {kind}\n  second line"]
        sent = time.time()
        log.warning(texts[0])
        log.error(texts[1])
        log.info(texts[2])
        log.warning(texts[3])
        recs = exactly_once(sink, texts)  # the handler's socket is still open
    finally:
        handler.close()
    for rec, pri in zip(recs, [12, 11, 14, 12], strict=True):
        expect(rec, pri=pri, sent=sent, message=rec.message.decode())
    assert srv.stats()["parse_errors"] == 0


# ---------------------------------------------------------------- rsyslog as a relay

# rsyslog's syslogtag is "APP[PID]:" cut to 32 characters by the traditional
# templates (%syslogtag:1:32%): with a 25-character tag and a 5-digit pid the
# colon is what goes, the case RFC 3164 section 4.1.3 covers
LONG_TAG = "tagRelayedThroughRsyslogd"
RSYSLOG_CONF = """
global(workDirectory="@WORK@")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="@UDP@")
action(type="omfwd" target="127.0.0.1" port="@PORT@" protocol="tcp" template="@TEMPLATE@")
"""


def _feed_relay(relay: Relay, udp_port: int, sink: Collect, texts: list[str]) -> float:
    """Probe the relay until it delivers, then send ``texts`` through it."""
    deadline = time.monotonic() + 20
    # (a probe has no PROCID: rsyslog's traditional templates then send "root probe
    # relay", whose TAG cannot be told from the message; docs/SYSLOG.md)
    while not any(PROBE in r.message for r in sink.records):
        relay.alive()
        assert time.monotonic() < deadline, relay.out.read_text(errors="replace")
        logger("-n", "127.0.0.1", "-P", str(udp_port), "-d", "--rfc5424", "probe relay")
        time.sleep(0.2)
    sent = time.time()
    for text in texts:
        logger(
            "-n", "127.0.0.1", "-P", str(udp_port), "-d", "--rfc5424", "-p", "auth.notice",
            "-t", LONG_TAG, "--id=29333", "--msgid", "RLY", text,
        )  # fmt: skip
    return sent


@pytest.mark.skipif(RSYSLOGD is None, reason="rsyslog not installed")
@pytest.mark.parametrize(
    "template",
    ["RSYSLOG_TraditionalForwardFormat", "RSYSLOG_ForwardFormat", "RSYSLOG_SyslogProtocol23Format"],
)
def test_rsyslog_relay_templates(
    serve: Serve, relays: list[Relay], tmp_path: Path, template: str
) -> None:
    assert RSYSLOGD is not None
    srv, sink = serve(["tcp://127.0.0.1:0"])
    udp = free_port()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.replace("@WORK@", str(tmp_path))
        .replace("@UDP@", str(udp))
        .replace("@PORT@", str(port_of(srv)))
        .replace("@TEMPLATE@", template)
    )
    relays.append(
        Relay([RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "pid")], tmp_path, name="rs")
    )
    texts = [f"via rsyslog {template} {i}" for i in range(3)]
    sent = _feed_relay(relays[0], udp, sink, texts)
    rfc5424 = template == "RSYSLOG_SyslogProtocol23Format"
    flags = {
        "RSYSLOG_TraditionalForwardFormat": ("tag_lenient",),
        "RSYSLOG_ForwardFormat": ("tag_lenient", "timestamp_lenient"),
    }.get(template, ())
    for rec in exactly_once(sink, texts):
        expect(
            rec, pri=4 * 8 + 5, sent=sent, message=rec.message.decode(), host=HOST,
            app=LONG_TAG, pid="29333", msgid="RLY" if rfc5424 else None, flags=flags,
        )  # fmt: skip


# ---------------------------------------------------------------- syslog-ng as a relay

SYSLOG_NG_CONF = """@version: 3.38
options { keep-hostname(yes); use-dns(no); chain-hostnames(no); stats-freq(0); };
source s_in { syslog(ip("127.0.0.1") port(@UDP@) transport("udp")); };
destination d_bsd { network("127.0.0.1" port(@BSD@) transport("tcp")); };
destination d_ietf { syslog("127.0.0.1" port(@IETF@) transport("tcp")); };
log { source(s_in); destination(d_bsd); destination(d_ietf); };
"""


def test_syslog_ng_relay_bsd_and_ietf(serve: Serve, relays: list[Relay], tmp_path: Path) -> None:
    """network() forwards RFC 3164 LF-framed, syslog() RFC 5424 octet-counted."""
    assert SYSLOG_NG.exists(), "syslog-ng-core not unpacked: run bash .ci/bootstrap test"
    bsd_srv, bsd = serve(["tcp://127.0.0.1:0"])
    ietf_srv, ietf = serve(["tcp://127.0.0.1:0"])
    udp = free_port()
    conf = tmp_path / "syslog-ng.conf"
    conf.write_text(
        SYSLOG_NG_CONF.replace("@UDP@", str(udp))
        .replace("@BSD@", str(port_of(bsd_srv)))
        .replace("@IETF@", str(port_of(ietf_srv)))
    )
    argv, env = syslog_ng_argv(conf, tmp_path)
    relays.append(Relay(argv, tmp_path, env, name="syslog-ng"))
    texts = [f"via syslog-ng {i}" for i in range(3)]
    sent = _feed_relay(relays[0], udp, bsd, texts)
    for rec in exactly_once(bsd, texts):
        expect(rec, pri=4 * 8 + 5, sent=sent, message=rec.message.decode(), host=HOST,
               app=LONG_TAG, pid="29333")  # fmt: skip
    for rec in exactly_once(ietf, texts):
        expect(rec, pri=4 * 8 + 5, sent=sent, message=rec.message.decode(), host=HOST,
               app=LONG_TAG, pid="29333", msgid="RLY")  # fmt: skip


# ---------------------------------------------------------------- journald ForwardToSyslog


def test_journald_forward_to_syslog(serve: Serve, relays: list[Relay], tmp_path: Path) -> None:
    """A private systemd-journald forwarding to our unix datagram socket: no
    HOSTNAME, identifier[pid], the sender's credentials."""
    assert JOURNALD is not None
    sock = tmp_path / "syslog.sock"
    srv, sink = serve([f"unix://{sock}"])
    relay = Relay(journald_argv(sock, tmp_path), tmp_path, name="journald")
    relays.append(relay)
    sent = time.time()
    deadline = time.monotonic() + 20
    while not any(PROBE in r.message for r in sink.records):
        relay.alive()
        assert time.monotonic() < deadline, relay.out.read_text(errors="replace")
        with contextlib.suppress(subprocess.CalledProcessError):
            in_namespace_of(relay.proc.pid, "systemd-cat", "-t", "probe", stdin=PROBE)
        time.sleep(0.2)
    texts = ["from systemd-cat", "native journal entry"]
    cat_pid = in_namespace_of(relay.proc.pid, "systemd-cat", "-t", "catty", "-p", "warning",
                              stdin=texts[0].encode())  # fmt: skip
    entry = f"MESSAGE={texts[1]}\nSYSLOG_IDENTIFIER=nativeapp\nPRIORITY=3\nSYSLOG_FACILITY=10\n"
    native_pid = in_namespace_of(relay.proc.pid, LOGGER or "logger", "--journald",
                                 stdin=entry.encode())  # fmt: skip
    cat, native = exactly_once(sink, texts)
    # (the credentials journald passes on are the sender's, or its own when the
    # sender has exited already: the PID in the TAG is the one to check)
    for rec, pri, app, pid in (
        (cat, 8 + 4, "catty", cat_pid),
        (native, 10 * 8 + 3, "nativeapp", native_pid),
    ):
        assert rec.attrs is not None
        expect(rec, pri=pri, sent=sent, message=rec.message.decode(), app=app, pid=str(pid))
        assert rec.attrs["transport"] == "unix"
    assert srv.stats()["parse_errors"] == 0
