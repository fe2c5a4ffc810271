"""The syslog server against real peers: util-linux logger, rsyslog as a relay
(TCP and TLS), Python TLS clients, raw sockets sending bad input.

Every server and rsyslogd is started on free loopback ports (or sockets in the
test's tmp dir) and stopped at teardown. The sink is a collecting fake.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from auditd_py import events
from auditd_py.clock import SystemClock
from auditd_py.config import SyslogSource, TLSSettings
from auditd_py.errors import ConfigError
from auditd_py.record import Fields
from auditd_py.sources.syslog import SyslogServer
from auditd_py.sources.syslog_parse import parse_listen_url
from tests.support.syslog import (
    LOGGER,
    RSYSLOGD,
    free_port,
    needs_logger,
    needs_rsyslog,
)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- fakes and helpers


class CollectSink:
    """Implements Sink; can be switched to 'full' to exercise back-pressure."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.batches: list[list[Fields]] = []
        self.full = False
        self.refused = 0

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        with self._cv:
            if self.full:
                if not block:
                    self.refused += 1
                    return False
                self._cv.wait_for(lambda: not self.full, timeout)
                if self.full:
                    return False
            for rec in batch:
                assert isinstance(rec, Fields)
                # what the sealer would do: attrs must encode, and hold no floats
                if rec.attrs:
                    _no_floats(rec.attrs)
                    orjson.dumps(rec.attrs, option=orjson.OPT_SORT_KEYS)
            self.batches.append(list(batch))
            self._cv.notify_all()
            return True

    def room(self) -> int:
        with self._cv:
            return 0 if self.full else 1 << 30

    def set_full(self, full: bool) -> None:
        with self._cv:
            self.full = full
            self._cv.notify_all()

    @property
    def records(self) -> list[Fields]:
        with self._cv:
            return [r for b in self.batches for r in b]

    def wait(self, pred: Callable[[list[Fields]], bool], timeout: float = 10.0) -> list[Fields]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                recs = [r for b in self.batches for r in b]
                if pred(recs):
                    return recs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; have {len(recs)} records: {recs[-5:]}")
                self._cv.wait(min(left, 0.05))

    def wait_n(self, n: int, timeout: float = 10.0) -> list[Fields]:
        return self.wait(lambda r: len(r) >= n, timeout)


def _no_floats(v: Any) -> None:
    assert not isinstance(v, float), v
    if isinstance(v, dict):
        for x in v.values():
            _no_floats(x)
    elif isinstance(v, list):
        for x in v:
            _no_floats(x)


class CollectMeta:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def event(self, name: str, message: str, **fields: Any) -> None:
        assert name in events.CATALOGUE, name
        with self._lock:
            self.events.append((name, message, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [f for n, _, f in self.events if n == name]

    def wait(self, name: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not self.named(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name} event; have {self.events}")
            time.sleep(0.02)
        return self.named(name)


Serve = Callable[..., tuple[SyslogServer, CollectSink, CollectMeta]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[SyslogServer] = []

    def make(listen: list[str], **kw: Any) -> tuple[SyslogServer, CollectSink, CollectMeta]:
        settings = SyslogSource(name="syslog", type="syslog", listen=listen, **kw)
        srv = SyslogServer(settings, SystemClock())
        sink, meta = CollectSink(), CollectMeta()
        srv.start(sink, meta, {})
        servers.append(srv)
        return srv, sink, meta

    yield make
    for srv in servers:
        t = time.monotonic()
        srv.stop()
        assert time.monotonic() - t < 2.5


def addr_of(srv: SyslogServer, transport: str) -> tuple[str, int]:
    for url in srv.bound:
        a = parse_listen_url(url)
        if a.transport == transport:
            return a.host, a.port
    raise AssertionError(f"no {transport} listener in {srv.bound}")


def frame_bytes(rec: Fields) -> bytes:
    """The original frame of a record (lossless rule of syslog_parse)."""
    assert rec.attrs is not None
    if "raw" in rec.attrs:
        return str(rec.attrs["raw"]).encode()
    if "raw_b64" in rec.attrs:
        return base64.b64decode(rec.attrs["raw_b64"])
    assert rec.attrs["continuation"] is True  # the only records without raw
    return rec.message


def by_message(recs: list[Fields], text: str) -> list[Fields]:
    return [r for r in recs if r.message == text.encode()]


def run_logger(*args: str, stdin: bytes | None = None) -> None:
    assert LOGGER is not None
    subprocess.run([LOGGER, *args], input=stdin, check=True, timeout=10, capture_output=True)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(sink: CollectSink, quiet: float = 0.3) -> list[Fields]:
    """Wait until no new record arrived for ``quiet`` seconds (to check 'exactly once')."""
    n = -1
    while True:
        recs = sink.records
        if len(recs) == n:
            return recs
        n = len(recs)
        time.sleep(quiet)


# ---------------------------------------------------------------- logger (util-linux)

UTF8 = ["grüße aus Köln", "日本語のログ ✓", "emoji 🦀 and tab\tinside"]


@needs_logger
def test_logger_udp_rfc5424_utf8(serve: Serve) -> None:
    srv, sink, _ = serve(["udp://127.0.0.1:0"])
    _, port = addr_of(srv, "udp")
    for i, text in enumerate(UTF8):
        run_logger(
            "-n", "127.0.0.1", "-P", str(port), "-d", "--rfc5424", "-t", "myapp",
            "--msgid", f"ID{i}", "--sd-id", "ex@32473", "--sd-param", f'n="{i}"', text,
        )  # fmt: skip
    sink.wait_n(3)
    recs = settle(sink)
    for i, text in enumerate(UTF8):
        (rec,) = by_message(recs, text)
        assert rec.source == "syslog"
        assert rec.attrs is not None
        sl = rec.attrs["syslog"]
        assert sl["format"] == "rfc5424"
        assert (sl["pri"], sl["facility"], sl["severity"], sl["version"]) == (13, 1, 5, 1)
        assert (sl["app"], sl["msgid"]) == ("myapp", f"ID{i}")
        assert sl["sd"]["ex@32473"] == {"n": str(i)}
        assert "tzKnown" in sl["sd"]["timeQuality"]
        assert "hostname" in sl
        assert "timestamp" in sl
        assert rec.attrs["transport"] == "udp"
        assert rec.attrs["peer"].startswith("127.0.0.1:")
        assert rec.attrs["raw"].endswith(" " + text)
        assert abs(rec.time_ns - time.time_ns()) < 60 * 10**9
    assert len(recs) == 3


@needs_logger
def test_logger_udp_rfc3164(serve: Serve) -> None:
    srv, sink, _ = serve(["udp://127.0.0.1:0"])
    _, port = addr_of(srv, "udp")
    run_logger(
        "-n", "127.0.0.1", "-P", str(port), "-d", "--rfc3164", "-t", "tag3164", "-i",
        "-p", "auth.warning", UTF8[0],
    )  # fmt: skip
    (rec,) = sink.wait_n(1)
    assert rec.message == UTF8[0].encode()
    assert rec.attrs is not None
    sl = rec.attrs["syslog"]
    assert sl["format"] == "rfc3164"
    assert (sl["facility"], sl["severity"]) == (4, 4)
    assert sl["app"] == "tag3164"
    assert sl["procid"].isdigit()
    assert "hostname" in sl
    assert len(settle(sink)) == 1


@needs_logger
@pytest.mark.parametrize("octet_count", [False, True])
@pytest.mark.parametrize("fmt", ["--rfc5424", "--rfc3164"])
def test_logger_tcp(serve: Serve, octet_count: bool, fmt: str) -> None:
    srv, sink, meta = serve(["tcp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    lines = [f"line {i} {UTF8[i % 3]}" for i in range(50)]
    args = ["-n", "127.0.0.1", "-P", str(port), "-T", fmt, "-t", "tcpapp"]
    if octet_count:
        args.append("--octet-count")
    run_logger(*args, stdin="\n".join(lines).encode() + b"\n")
    sink.wait_n(len(lines))
    recs = settle(sink)
    assert [r.message.decode() for r in recs] == lines  # in order, exactly once
    for r in recs:
        assert r.attrs is not None
        assert r.attrs["transport"] == "tcp"
        assert r.attrs["syslog"]["app"] == "tcpapp"
        assert "parse_error" not in r.attrs
    assert srv.stats()["parse_errors"] == 0
    assert not meta.named(events.SYSLOG_PARSE_ERROR)


@needs_logger
@pytest.mark.parametrize("fmt", ["--rfc3164", "--rfc5424"])
def test_logger_unix_datagram(serve: Serve, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "log.sock"
    srv, sink, _ = serve([f"unix://{path}"])
    run_logger("-u", str(path), "--socket-errors=on", fmt, "-t", "unixapp", UTF8[1])
    (rec,) = sink.wait_n(1)
    assert rec.message == UTF8[1].encode()
    assert rec.attrs is not None
    assert rec.attrs["transport"] == "unix"
    assert rec.attrs["syslog"]["app"] == "unixapp"
    assert rec.attrs["cred"]["uid"] == os.getuid()
    assert rec.attrs["cred"]["pid"] > 0
    assert rec.attrs["peer"] == "pid={pid} uid={uid} gid={gid}".format(**rec.attrs["cred"])
    assert len(settle(sink)) == 1
    srv.stop()
    assert not path.exists()


@needs_logger
def test_logger_unix_stream(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "stream.sock"
    srv, sink, _ = serve([f"unix-stream://{path}"])
    run_logger("-u", str(path), "-T", "--socket-errors=on", "-t", "s", stdin=b"one\ntwo\n")
    recs = sink.wait_n(2)
    assert [r.message for r in recs] == [b"one", b"two"]
    assert recs[0].attrs is not None
    assert recs[0].attrs["transport"] == "unix-stream"
    assert recs[0].attrs["cred"]["uid"] == os.getuid()
    # glibc's syslog() over a stream socket ends frames with NUL, not LF
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(str(path))
        c.sendall(b"<13>Nov 26 05:07:39 app[1]: nul one\x00<13>Nov 26 05:07:39 app[1]: nul two\x00")
    recs = sink.wait_n(4)
    assert [r.message for r in recs[2:]] == [b"nul one", b"nul two"]
    srv.stop()
    assert not path.exists()


# ---------------------------------------------------------------- rsyslog as a relay


class Rsyslog:
    def __init__(self, tmp: Path, body: str) -> None:
        assert RSYSLOGD is not None
        work = tmp / "rsyslog-work"
        work.mkdir(exist_ok=True)
        self.udp_port = free_port()
        self.conf = tmp / "rsyslog.conf"
        self.conf.write_text(body.replace("@WORK@", str(work)).replace("@UDP@", str(self.udp_port)))
        check = subprocess.run(
            [RSYSLOGD, "-N1", "-f", str(self.conf)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr + check.stdout
        self.log = open(tmp / "rsyslogd.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(tmp / "rsyslogd.pid")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def send(self, payload: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(payload, ("127.0.0.1", self.udp_port))

    def wait_ready(self, sink: CollectSink, timeout: float = 20.0) -> None:
        """Send probes until one comes through the relay."""
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.conf.parent / "rsyslogd.out").read_text()
            self.send(b"<13>1 - - probe - - - probe %d" % i)
            i += 1
            try:
                sink.wait(lambda r: any(x.message.startswith(b"probe ") for x in r), 0.3)
                return
            except AssertionError:
                continue
        raise AssertionError(
            "rsyslog relay never delivered: " + (self.conf.parent / "rsyslogd.out").read_text()
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[[str], Rsyslog]]:
    started: list[Rsyslog] = []

    def start(body: str) -> Rsyslog:
        r = Rsyslog(tmp_path, body)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def _relay_check(relay: Rsyslog, sink: CollectSink, transport: str) -> None:
    relay.wait_ready(sink)
    # (rsyslog escapes control characters such as TAB as #011 on receipt)
    texts = [f"relayed {i} {UTF8[i % 2]} 🦀" for i in range(20)]
    for text in texts:
        run_logger(
            "-n", "127.0.0.1", "-P", str(relay.udp_port), "-d", "--rfc5424", "-t", "viarelay",
            "--msgid", "RLY", text,
        )  # fmt: skip
    sink.wait(lambda r: all(by_message(r, t) for t in texts))
    recs = settle(sink)
    for text in texts:
        (rec,) = by_message(recs, text)  # exactly once
        assert rec.attrs is not None
        sl = rec.attrs["syslog"]
        assert sl["format"] == "rfc5424"
        assert (sl["app"], sl["msgid"]) == ("viarelay", "RLY")
        assert rec.attrs["transport"] == transport
        assert "parse_error" not in rec.attrs
        # RSYSLOG_SyslogProtocol23Format ends with LF inside the octet count: kept in raw
        assert rec.attrs["raw"].endswith(text + "\n")


_RELAY_BASE = """
global(workDirectory="@WORK@" @GLOBAL@)
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="@UDP@")
action(type="omfwd" target="127.0.0.1" port="@PORT@" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format" @ACTION@)
"""


@needs_rsyslog
@needs_logger
def test_rsyslog_relay_tcp_octet_counted(serve: Serve, rsyslog: Callable[[str], Rsyslog]) -> None:
    srv, sink, _ = serve(["tcp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    body = _RELAY_BASE.replace("@PORT@", str(port)).replace("@GLOBAL@", "")
    relay = rsyslog(body.replace("@ACTION@", ""))
    _relay_check(relay, sink, "tcp")


@needs_rsyslog
@needs_logger
def test_rsyslog_relay_tls(
    serve: Serve, rsyslog: Callable[[str], Rsyslog], pki: dict[str, Path]
) -> None:
    tls = TLSSettings(
        cert=pki["server"], key=pki["server.key"], ca=pki["ca"], client_auth="required"
    )
    srv, sink, meta = serve(["tls://127.0.0.1:0"], tls=tls)
    _, port = addr_of(srv, "tls")
    glob = (
        f'DefaultNetstreamDriverCAFile="{pki["ca"]}" '
        f'DefaultNetstreamDriverCertFile="{pki["client"]}" '
        f'DefaultNetstreamDriverKeyFile="{pki["client.key"]}"'
    )
    action = (
        'StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name" '
        'StreamDriverPermittedPeers="localhost"'
    )
    body = _RELAY_BASE.replace("@PORT@", str(port)).replace("@GLOBAL@", glob)
    relay = rsyslog(body.replace("@ACTION@", action))
    _relay_check(relay, sink, "tls")
    rec = by_message(sink.records, f"relayed 0 {UTF8[0]} 🦀")[0]
    assert rec.attrs is not None
    assert rec.attrs["tls_peer"] == "client.test"
    assert srv.stats()["tls_errors"] == 0
    assert not meta.named(events.SYSLOG_TLS_ERROR)


# ---------------------------------------------------------------- TLS client auth


def _tls_client(
    pki: dict[str, Path], port: int, cert: str | None
) -> tuple[ssl.SSLSocket | None, str]:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert is not None:
        ctx.load_cert_chain(pki[cert], pki[f"{cert}.key"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost"), ""
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        return None, str(exc)


@pytest.mark.parametrize("bad", ["evil", None])
def test_tls_client_auth_required(serve: Serve, pki: dict[str, Path], bad: str | None) -> None:
    tls = TLSSettings(
        cert=pki["server"], key=pki["server.key"], ca=pki["ca"], client_auth="required"
    )
    srv, sink, meta = serve(["tls://127.0.0.1:0"], tls=tls)
    _, port = addr_of(srv, "tls")
    # wrong certificate (or none): TLS 1.3 completes the client's side first, so the
    # client may get to send before the server's alert arrives; nothing must come through
    s, _ = _tls_client(pki, port, bad)
    if s is not None:
        try:
            s.sendall(b"<13>1 - - - - - - must not arrive\n")
            s.recv(1)
        except (ssl.SSLError, OSError):
            pass
        finally:
            s.close()
    ev = meta.wait(events.SYSLOG_TLS_ERROR)
    assert ev[0]["count"] == 1
    assert ev[0]["peer"].startswith("127.0.0.1:")
    assert ev[0]["reason"]
    assert srv.stats()["tls_errors"] == 1
    # a good client still delivers, and is identified by its certificate
    good, err = _tls_client(pki, port, "client")
    assert good is not None, err
    with good:
        good.sendall(b"30 <13>1 - - app - - - tls ok\n")
    (rec,) = sink.wait_n(1)
    assert rec.message == b"tls ok"
    assert rec.attrs is not None
    assert rec.attrs["transport"] == "tls"
    assert rec.attrs["tls_peer"] == "client.test"
    assert len(settle(sink)) == 1
    assert srv.healthy() == (True, "")


def test_tls_without_client_auth(serve: Serve, pki: dict[str, Path]) -> None:
    tls = TLSSettings(cert=pki["server"], key=pki["server.key"])
    srv, sink, meta = serve(["tls://127.0.0.1:0"], tls=tls)
    _, port = addr_of(srv, "tls")
    s, err = _tls_client(pki, port, None)
    assert s is not None, err
    with s:
        s.sendall(b"<13>1 - - app - - - plain tls\n")
    (rec,) = sink.wait_n(1)
    assert rec.message == b"plain tls"
    # a client that does not speak TLS is counted, not fatal
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"<13>1 - - - - - - this is not TLS\n" * 10)
        c.shutdown(socket.SHUT_WR)
        c.settimeout(5)
        with pytest.raises(OSError):
            while c.recv(4096):
                pass
            raise OSError("closed")
    assert meta.wait(events.SYSLOG_TLS_ERROR)[0]["count"] == 1
    assert srv.stats()["tls_errors"] == 1
    assert srv.healthy() == (True, "")


def test_tls_config_errors(pki: dict[str, Path], tmp_path: Path) -> None:
    sink, meta = CollectSink(), CollectMeta()
    with pytest.raises(ValidationError, match="tls:// listeners need a tls: section"):
        SyslogSource(name="s", type="syslog", listen=["tls://127.0.0.1:0"])
    with pytest.raises(ValidationError, match=r"needs tls\.ca"):
        TLSSettings(cert=pki["server"], key=pki["server.key"], client_auth="required")
    bad = SyslogSource(
        name="s",
        type="syslog",
        listen=["tls://127.0.0.1:0"],
        tls=TLSSettings(cert=tmp_path / "missing.pem", key=pki["server.key"]),
    )
    srv = SyslogServer(bad, SystemClock())
    with pytest.raises(ConfigError, match="certificate"):
        srv.start(sink, meta, {})
    srv.stop()


# ---------------------------------------------------------------- bad input, limits


def test_bad_input_over_tcp_is_sealed_raw(serve: Serve) -> None:
    srv, sink, meta = serve(["tcp://127.0.0.1:0"], max_message_bytes=1000)
    _, port = addr_of(srv, "tcp")
    lines = [
        b"garbage without any header",
        b"\xff\xfe invalid \xc3 utf-8 \x80",
        b"<13>1 - - app - - - nul\x00inside",
        b"\x00\x00\x00",
        b"<13>1 yesterday - - - - - bad timestamp",
        b"<13>1 - h\xc3\xa9 - - - - bad hostname",
        b"<13>Nov 26 05:07:39 host app[1]: fine after all that",
    ]
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"\n".join(lines) + b"\n")
    recs = sink.wait_n(len(lines))
    assert [frame_bytes(r) for r in recs] == lines  # nothing lost, byte for byte
    errs = [r.attrs.get("parse_error") if r.attrs else None for r in recs]
    assert [e is not None for e in errs] == [False, False, False, False, True, True, False]
    # no PRI: RFC 3164 section 4.3.3, PRI 13 and the frame as the message
    assert [r.attrs.get("syslog", {}).get("pri_inferred") for r in recs if r.attrs] == [
        True, True, None, True, None, None, None
    ]  # fmt: skip
    assert recs[1].message == lines[1]  # sealed as is (the archive stores it base64)
    assert recs[2].message == b"nul\x00inside"  # LF framing, decided by the first frame
    assert srv.stats()["parse_errors"] == 2
    # an octet count, then the connection ends mid-frame
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"500 <13>1 - - - - - - cut short")
    (cut,) = sink.wait_n(len(lines) + 1)[len(lines) :]
    assert cut.attrs is not None
    assert cut.attrs["truncated"] is True
    assert cut.attrs["octet_count"] == 500
    assert frame_bytes(cut) == b"<13>1 - - - - - - cut short"
    srv.stop()
    ev = meta.named(events.SYSLOG_PARSE_ERROR)
    assert ev
    assert sum(e["count"] for e in ev) == srv.stats()["parse_errors"]
    assert all(e["listener"].startswith("tcp://127.0.0.1:") for e in ev)


def test_parse_error_events_are_rate_limited(serve: Serve) -> None:
    srv, sink, meta = serve(["tcp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"<13>1 yesterday - - - - - garbage first\n")
        sink.wait_n(1)
        for i in range(199):
            c.sendall(b"<13>1 yesterday - - - - - garbage %d\n" % i)
    sink.wait_n(200)
    deadline = time.monotonic() + 5  # the ticker reports the rest within a second or two
    while sum(e["count"] for e in meta.named(events.SYSLOG_PARSE_ERROR)) < 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ev = meta.named(events.SYSLOG_PARSE_ERROR)
    assert len(ev) == 2
    assert ev[0]["count"] == 1
    assert sum(e["count"] for e in ev) == 200
    assert ev[-1]["reason"] == "RFC 5424 header: bad TIMESTAMP"
    assert ev[0]["listener"] == srv.bound[0]


def test_bad_datagrams(serve: Serve) -> None:
    srv, sink, meta = serve(["udp://127.0.0.1:0"], max_message_bytes=100)
    host, port = addr_of(srv, "udp")
    grams = [b"<13>1 - \xff\x00garbage - - - x", b"<13>1 - - - - - - " + b"x" * 250, b"", b"<14>ok"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for g in grams:
            s.sendto(g, (host, port))
    recs = sink.wait_n(5)  # garbage, 3 records for the oversize one, ok (empty skipped)
    assert recs[0].attrs is not None
    assert recs[0].attrs["parse_error"]
    assert frame_bytes(recs[0]) == grams[0]
    big = recs[1:4]
    assert big[0].attrs is not None
    assert big[0].attrs["oversize"] == len(grams[1])
    assert b"".join(frame_bytes(r) for r in big) == grams[1]
    assert all(r.attrs and r.attrs.get("continuation") for r in big[1:])
    assert recs[4].message == b"ok"
    assert meta.wait(events.SYSLOG_PARSE_ERROR)[0]["count"] == 1


def test_ten_megabyte_frame_becomes_oversize_plus_continuations(serve: Serve) -> None:
    mx = 64 * 1024
    # binary content with NUL bytes: LF framing set (auto would take NUL as the trailer)
    srv, sink, _ = serve(["tcp://127.0.0.1:0"], max_message_bytes=mx, framing="lf")
    _, port = addr_of(srv, "tcp")
    pattern = bytes(range(14, 256)) + b"\x00\x01\x02"  # no LF, invalid UTF-8 included
    frame = b"<13>1 - host big - - - " + (pattern * (10 * 1024 * 1024 // len(pattern)))
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(frame + b"\n<13>1 - host after - - - next message\n")
    n = -(-len(frame) // mx) + 1
    recs = sink.wait_n(n, timeout=30)
    assert len(recs) == n
    first, conts, after = recs[0], recs[1:-1], recs[-1]
    assert first.attrs is not None
    # sealed as it streamed (issue 14): the first record knows a lower bound only
    assert first.attrs["oversize"] <= len(frame)
    assert first.attrs["oversize_at_least"] is True
    assert first.attrs["syslog"]["app"] == "big"
    assert all(r.attrs == {"transport": "tcp", "peer": first.attrs["peer"], "continuation": True}
               for r in conts)  # fmt: skip
    assert b"".join(frame_bytes(r) for r in recs[:-1]) == frame  # total bytes preserved
    assert after.message == b"next message"
    assert srv.stats()["oversize"] == 1


def test_max_connections_sheds_the_idlest(serve: Serve) -> None:
    """Fair admission (issue 14): at the limit a new sender is served and the
    idlest connection is closed, what it buffered sealed, its peer named."""
    srv, sink, meta = serve(["tcp://127.0.0.1:0"], max_connections=2)
    _, port = addr_of(srv, "tcp")
    idle = socket.create_connection(("127.0.0.1", port))
    busy = socket.create_connection(("127.0.0.1", port))
    try:
        idle.sendall(b"<13>1 - - - - - - from the idle one\n<13>1 - - - - - - unfini")
        sink.wait_n(1)
        busy.sendall(b"<13>1 - - - - - - from the busy one\n")
        sink.wait_n(2)
        with socket.create_connection(("127.0.0.1", port)) as new:
            new.sendall(b"<13>1 - - - - - - newcomer served\n")
            recs = sink.wait(lambda r: any(x.message == b"newcomer served" for x in r))
        idle.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert idle.recv(10) == b""  # closed by the server
        ev = meta.wait(events.SYSLOG_LIMIT)
        assert ev[0]["peer"] == f"127.0.0.1:{idle.getsockname()[1]}"
        assert "idlest" in ev[0]["reason"]
        cut = [r for r in recs if r.message == b"unfini"]
        assert len(cut) == 1
        assert cut[0].attrs is not None
        assert cut[0].attrs["truncated"] is True
        assert srv.stats()["shed_connections"] == 1
        assert srv.stats()["rejected_connections"] == 0
        busy.sendall(b"<13>1 - - - - - - busy still served\n")
        sink.wait(lambda r: any(x.message == b"busy still served" for x in r))
    finally:
        idle.close()
        busy.close()


def test_idle_timeout_closes_silent_connections(serve: Serve) -> None:
    srv, sink, meta = serve(["tcp://127.0.0.1:0"], idle_timeout="1s")
    _, port = addr_of(srv, "tcp")
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"<13>1 - - - - - - hello\n")
        sink.wait_n(1)
        c.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert c.recv(10) == b""  # closed by the server
    ev = meta.wait(events.SYSLOG_LIMIT)
    assert "idle_timeout" in ev[0]["reason"]
    assert srv.stats()["idle_closed_connections"] == 1


def test_a_slow_sender_has_its_frame_sealed_after_frame_timeout(serve: Serve) -> None:
    srv, sink, _ = serve(["tcp://127.0.0.1:0"], partial_timeout="5s", frame_timeout="300ms")
    _, port = addr_of(srv, "tcp")
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"<13>1 - - - - - - ")
        t = time.monotonic()
        while not sink.records:  # a byte every 50 ms: never idle for partial_timeout
            assert time.monotonic() - t < 4, "a trickling frame was not sealed"
            c.sendall(b"x")
            time.sleep(0.05)
    (part,) = sink.records[:1]
    assert part.attrs is not None
    assert part.attrs["partial"] is True
    assert part.message.startswith(b"x")


@needs_logger
def test_ten_thousand_connections_leave_no_trace(serve: Serve) -> None:
    before = fd_count()
    srv, sink, _ = serve(["tcp://127.0.0.1:0", "udp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    running = fd_count()
    t = time.monotonic()
    for i in range(10_000):
        c = socket.socket()
        if i % 3 == 0:  # some end with a RST instead of a FIN
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.connect(("127.0.0.1", port))
        c.close()
    elapsed = time.monotonic() - t
    assert elapsed < 30
    # connections reset while still in the accept queue never reach user space
    # (accept() fails with ECONNABORTED); the ones closed with a FIN all do
    fin_closed = 10_000 - len(range(0, 10_000, 3))
    deadline = time.monotonic() + 30  # under load (both cores busy) the backlog takes a while
    while time.monotonic() < deadline:
        st = srv.stats()
        seen = st["connections"] + st["rejected_connections"]
        if seen >= fin_closed and not st["active_connections"]:
            break
        time.sleep(0.05)
    st = srv.stats()
    assert fin_closed <= st["connections"] + st["rejected_connections"] <= 10_000
    assert st["active_connections"] == 0
    assert srv.healthy() == (True, "")
    assert settled_fd_count(running, 30) == running  # closing transports takes a while under load
    run_logger("-n", "127.0.0.1", "-P", str(port), "-T", "still serving")
    assert sink.wait_n(1)[0].message == b"still serving"
    assert len(sink.records) == 1
    srv.stop()
    assert settled_fd_count(before) == before


def settled_fd_count(want: int, timeout: float = 10.0) -> int:
    """The process's open descriptors, once they reach ``want`` (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    n = fd_count()
    while n != want and time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count()
    return n


def test_back_pressure_blocks_tcp_sender_and_loses_nothing(serve: Serve) -> None:
    srv, sink, meta = serve(["tcp://127.0.0.1:0", "udp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    sink.set_full(True)
    line = b"<13>1 - - bp - - - %06d " + b"p" * 980 + b"\n"
    total = 40_000  # ~40 MB: more than every socket buffer on the way
    data = b"".join(line % i for i in range(total))
    sent = [0]
    done = threading.Event()

    def sender() -> None:
        with socket.create_connection(("127.0.0.1", port)) as c:
            view = memoryview(data)
            while sent[0] < len(data):
                sent[0] += c.send(view[sent[0] : sent[0] + 65536])
        done.set()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    # the sender stalls: its sends stop making progress well before the end
    last, still_since = -1, time.monotonic()
    while time.monotonic() - still_since < 1.0:
        if sent[0] != last:
            last, still_since = sent[0], time.monotonic()
        assert not done.is_set(), "sender was never pushed back"
        time.sleep(0.05)
    assert sent[0] < len(data) // 2
    assert srv.stats()["paused"] == 1
    assert srv.healthy() == (True, "")
    # datagrams meanwhile are dropped and counted
    host, uport = addr_of(srv, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(5):
            u.sendto(b"<13>1 - - - - - - dropped", (host, uport))
    ev = meta.wait(events.SYSLOG_DROPPED)
    assert ev[0]["reason"] == "sink full"
    deadline = time.monotonic() + 5
    while srv.stats()["dropped"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.stats()["dropped"] == 5
    # room again: everything arrives, in order, once
    sink.set_full(False)
    assert done.wait(60)
    recs = sink.wait_n(total, timeout=60)
    assert len(recs) == total
    assert [r.message[:6] for r in recs] == [b"%06d" % i for i in range(total)]
    assert srv.stats()["paused"] == 0
    assert not [r for r in recs if r.attrs and "parse_error" in r.attrs]


def test_with_the_pipeline_queue_as_sink() -> None:
    """The real Sink: a small BatchQueue drained slowly; records encode as sealed bodies."""
    from auditd_py.chain.encoding import encode_body
    from auditd_py.daemon.queue import BatchQueue

    q = BatchQueue(capacity=1000)
    srv = SyslogServer(
        SyslogSource(name="syslog", type="syslog", listen=["tcp://127.0.0.1:0"]), SystemClock()
    )
    srv.start(q, CollectMeta(), {})
    try:
        _, port = addr_of(srv, "tcp")
        n = 20_000
        data = b"".join(b"<13>1 - h app - - - q\xc3\xa9 %d\n" % i for i in range(n))

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(data)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            for batch in q.get(timeout=0.1):
                for rec in batch:
                    assert isinstance(rec, Fields)
                    encode_body(1, 0, rec)
                    got.append(rec.message)
            time.sleep(0.005)  # a slow sealer
        assert got == [f"qé {i}".encode() for i in range(n)]
        assert q.high_water <= 1000 + 512
        assert srv.stats()["dropped"] == 0
    finally:
        srv.stop()


class StallSink(CollectSink):
    """The first put blocks (stalling the server's loop) until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.stalled = threading.Event()

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        if not self.gate.is_set():
            self.stalled.set()
            self.gate.wait(30)
        return super().put(batch, block=block, timeout=timeout)


def test_kernel_udp_drops_are_counted(tmp_path: Path) -> None:
    srv = SyslogServer(
        SyslogSource(name="syslog", type="syslog", listen=["udp://127.0.0.1:0"]), SystemClock()
    )
    sink, meta = StallSink(), CollectMeta()
    srv.start(sink, meta, {})
    try:
        host, port = addr_of(srv, "udp")
        sent = 60_000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>1 - - - - - - first", (host, port))
            assert sink.stalled.wait(10)
            for i in range(1, sent):
                s.sendto(b"<13>1 - - - - - - flood %d" % i, (host, port))
        sink.gate.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = srv.stats()
            if st["received"] + st["kernel_drops"] >= sent:
                break
            time.sleep(0.05)
        st = srv.stats()
        assert st["kernel_drops"] > 0
        assert st["dropped"] == 0
        assert st["received"] + st["kernel_drops"] == sent  # every datagram accounted for
        assert len(settle(sink)) == st["received"]
        ev = meta.wait(events.SYSLOG_DROPPED)
        assert ev[-1]["reason"] == "kernel receive buffer full"
        assert ev[-1]["kernel_drops"] <= st["kernel_drops"]
    finally:
        sink.gate.set()
        srv.stop()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_loopback(serve: Serve) -> None:
    try:
        srv, sink, _ = serve(["tcp://[::1]:0", "udp://[::1]:0"])
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert all(u.split("://")[1].startswith("[::1]:") for u in srv.bound)
    _, port = addr_of(srv, "tcp")
    with socket.create_connection(("::1", port)) as c:
        c.sendall(b"<13>1 - - - - - - over v6\n")
    (rec,) = sink.wait_n(1)
    assert rec.attrs is not None
    assert rec.attrs["peer"].startswith("[::1]:")
    _, uport = addr_of(srv, "udp")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.sendto(b"<13>1 - - - - - - udp v6", ("::1", uport))
    assert sink.wait_n(2)[1].message == b"udp v6"


def test_throughput_one_tcp_connection(serve: Serve) -> None:
    srv, sink, _ = serve(["tcp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    n = 20_000
    data = b"".join(
        b'<13>1 2026-11-26T05:07:39.123Z host app 42 ID [x@1 k="v"] message %d\n' % i
        for i in range(n)
    )
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(data)
    recs = sink.wait_n(n, timeout=30)
    rate = n / (time.perf_counter() - t)
    assert [r.message for r in recs[:3]] == [b"message 0", b"message 1", b"message 2"]
    assert rate > 2_000, rate  # a sanity floor; real numbers are measured separately
    assert max(len(b) for b in sink.batches) <= 512


# ---------------------------------------------------------------- lifecycle


def test_unix_sockets_stale_files_and_removal(serve: Serve, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(stale))
    s.close()  # leaves the file behind, nobody listening
    srv, _, _ = serve([f"unix://{stale}", f"unix-stream://{tmp_path / 'st.sock'}"])
    assert stale.exists()
    assert srv.healthy() == (True, "")
    # a live socket is not stolen, a regular file is not replaced
    for listen in ([f"unix://{stale}"], [f"unix://{tmp_path / 'regular'}"]):
        (tmp_path / "regular").write_text("x")
        other = SyslogServer(SyslogSource(name="o", type="syslog", listen=listen), SystemClock())
        with pytest.raises(ConfigError):
            other.start(CollectSink(), CollectMeta(), {})
        other.stop()
    srv.stop()
    assert not stale.exists()
    assert not (tmp_path / "st.sock").exists()
    assert (tmp_path / "regular").exists()


def test_port_in_use_fails_start_without_leaks(serve: Serve) -> None:
    srv, _, _ = serve(["tcp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    before = fd_count()
    other = SyslogServer(
        SyslogSource(
            name="o", type="syslog", listen=["udp://127.0.0.1:0", f"tcp://127.0.0.1:{port}"]
        ),
        SystemClock(),
    )
    with pytest.raises(ConfigError, match="cannot bind"):
        other.start(CollectSink(), CollectMeta(), {})
    other.stop()
    assert fd_count() == before
    assert other.healthy()[0] is False


def test_stop_delivers_partial_frames_and_is_quick(serve: Serve) -> None:
    srv, sink, _ = serve(["tcp://127.0.0.1:0", "udp://127.0.0.1:0"])
    _, port = addr_of(srv, "tcp")
    c = socket.create_connection(("127.0.0.1", port))
    d = socket.create_connection(("127.0.0.1", port))
    try:
        c.sendall(b"<13>1 - - - - - - complete\n<13>1 - - - - - - partial")
        sink.wait_n(1)
        assert srv.healthy() == (True, "")
        # what the kernel has already accepted on an open connection is read at stop
        d.sendall(b"".join(b"<13>1 - - - - - - queued %d\n" % i for i in range(5000)))
        t = time.monotonic()
        srv.stop()
        assert time.monotonic() - t < 2
    finally:
        c.close()
        d.close()
    recs = sink.records
    partial = [r for r in recs if r.attrs and r.attrs.get("truncated")]
    assert [r.message for r in partial] == [b"partial"]
    assert recs[0].message == b"complete"
    queued = [r.message for r in recs if r.message.startswith(b"queued")]
    assert queued == [b"queued %d" % i for i in range(5000)]
    assert srv.healthy() == (False, "stopped")
    srv.drain()  # harmless after stop


def test_drain_flushes(serve: Serve) -> None:
    srv, sink, _ = serve(["udp://127.0.0.1:0"])
    host, port = addr_of(srv, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(100):
            s.sendto(b"<13>1 - - - - - - d%d" % i, (host, port))
    srv.drain()
    assert len(sink.wait_n(100)) == 100
    st = srv.stats()
    assert st["received"] == 100
    assert set(st) >= {
        "received",
        "parse_errors",
        "dropped",
        "kernel_drops",
        "connections",
        "rejected_connections",
        "tls_errors",
        "oversize",
    }


def test_partial_frame_is_sealed_after_idle_and_the_rest_continues_it(serve: Serve) -> None:
    srv, sink, _ = serve(["tcp://127.0.0.1:0"], partial_timeout="200ms")
    _, port = addr_of(srv, "tcp")
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"<13>Nov 26 05:07:39 host app[1]: whole\n<13>Nov 26 05:07:39 host app[1]: hal")
        (whole, part) = sink.wait_n(2)  # without the connection closing
        assert whole.message == b"whole"
        assert part.attrs is not None
        assert part.attrs["partial"] is True
        assert part.attrs["syslog"]["app"] == "app"
        assert part.message == b"hal"
        c.sendall(b"f done\n<13>Nov 26 05:07:39 host app[1]: next\n")
        cont, nxt = sink.wait_n(4)[2:]
    assert cont.attrs is not None
    assert cont.attrs["continuation"] is True
    assert (
        part.attrs["raw"].encode() + cont.message == b"<13>Nov 26 05:07:39 host app[1]: half done"
    )
    assert nxt.message == b"next"
    assert srv.stats()["parse_errors"] == 0


def test_framing_override_and_its_config() -> None:
    doc: dict[str, Any] = {"name": "s", "type": "syslog", "listen": ["tcp://127.0.0.1:1"]}
    s = SyslogSource.model_validate({**doc, "framing": "nul", "partial_timeout": "2s"})
    assert (s.framing, s.partial_timeout) == ("nul", 2 * 10**9)
    assert SyslogSource.model_validate(doc).framing == "auto"
    with pytest.raises(ValidationError):
        SyslogSource.model_validate({**doc, "framing": "stx"})


def test_slow_senders_holding_partial_lines_lock_no_one_out(serve: Serve) -> None:
    """Issue 14: idle connections holding partial lines. Their bytes are sealed
    (partial after the idle time, truncated when shed), every new sender is
    served, each shed is sealed with its peer; nothing is lost."""
    srv, sink, meta = serve(["tcp://127.0.0.1:0"], max_connections=20, partial_timeout="200ms")
    _, port = addr_of(srv, "tcp")
    chunk = b"<13>1 - - - - - - " + b"p" * 30_000
    slow: list[socket.socket] = []
    try:
        for _ in range(30):  # each sends before the next connects: a shed one has sent it
            c = socket.create_connection(("127.0.0.1", port))
            slow.append(c)
            c.sendall(chunk)  # no LF: a partial line each
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"<13>1 - - - - - - newcomer\n")
            sink.wait(lambda r: any(x.message == b"newcomer" for x in r), timeout=30)
        # every partial line is sealed, whether by the idle timer or by shedding
        recs = sink.wait(
            lambda r: sum(1 for x in r if x.message.startswith(b"ppp")) == 30, timeout=30
        )
    finally:
        for c in slow:
            c.close()
    held = [r for r in recs if r.message.startswith(b"ppp")]
    assert all(frame_bytes(r) == chunk for r in held)
    assert srv.stats()["shed_connections"] == 11  # 30 + 1 through 20 places
    shed = meta.named(events.SYSLOG_LIMIT)
    assert len(shed) == 11
    assert len({e["peer"] for e in shed}) == 11
