"""Forwarding to a syslog collector: real rsyslog on loopback, plain TCP and TLS.

rsyslog (Debian's package) is started by the tests with imtcp (octet counting)
and, for TLS, the gtls driver; it writes ``%structured-data% %msg%`` to a
file. ``auditd-py collect`` rebuilds the archive from that file and ``verify``
checks it against the host's keys: the collector's copy is the archive.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditd_py.chain.encoding import Fields
from auditd_py.config import ForwardTLS, SyslogForward
from auditd_py.errors import ForwardError
from auditd_py.forward.base import ArchiveInfo, cursor_path, load_cursor
from auditd_py.forward.collect import collect
from auditd_py.forward.syslog import SyslogForwarder
from auditd_py.forward.tail import SealedTail
from auditd_py.sources.syslog_parse import parse_syslog
from auditd_py.store.compress import compress_segment
from auditd_py.store.layout import Layout
from auditd_py.store.reader import verify_archive
from auditd_py.store.writer import ArchiveWriter, EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, show, wait_for
from tests.support.syslog import RSYSLOGD, free_port, needs_rsyslog, syslog_line

TRICKY = [
    "plain",
    "tab\tand\x7fdel",
    "newline\ninside",
    'quote " ] \\ bracket',
    "utf-8 ünïcödé 🦀",
    "bad \udcff surrogate-escaped",
]


class Meta:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, name: str, message: str, **fields: object) -> None:
        self.events.append((name, message))


def build(arc: Arc, n: int = 250, every: int = 60) -> ArchiveWriter:
    w = arc.writer(EpochPolicy(max_records=25))
    for i in range(n):
        arc.clock.advance(0.001)
        text = TRICKY[i % len(TRICKY)] if i % 10 == 0 else f"line {i}"
        raw = text.encode("utf-8", "surrogateescape")
        w.append(Fields(arc.clock.now_ns(), "test", raw))
        if i % every == every - 1:
            w.rotate_segment("test")
    return w


def info(arc: Arc) -> ArchiveInfo:
    ident = arc.layout.read_identity()
    obj = orjson.loads(ident)
    return ArchiveInfo(obj["archive"], obj["host"], "test", ident)


def forwarder(
    arc: Arc,
    target: str,
    tls: ForwardTLS | None = None,
    w: ArchiveWriter | None = None,
    batch: int = 40,
) -> SyslogForwarder:
    settings = SyslogForward.model_validate(
        {
            "name": "central",
            "type": "syslog",
            "target": target,
            "tls": tls,
            "batch_records": batch,
            "ack_timeout": "5s",
        }
    )
    return SyslogForwarder(
        settings,
        arc.layout,
        info(arc),
        arc.layout.state,
        durable=(lambda: w.durable) if w is not None else (lambda: None),
        head=(lambda: w.sealer.seq) if w is not None else (lambda: 10**9),
        meta=Meta(),
    )


def drain(fwd: SyslogForwarder, limit: int = 500) -> int:
    total = 0
    for _ in range(limit):
        n = fwd.step()
        if n == 0:
            return total
        total += n
    raise AssertionError("the forwarder never caught up")


# ---------------------------------------------------------------- the tail (unit)


def test_tail_reads_across_segments_compressed_and_stops_at_durable(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130, every=50)
    w.flush(sync=True)
    names = arc.layout.segment_names()
    compress_segment(arc.layout, names[0], "zstd")
    assert w.durable is not None
    tail = SealedTail(arc.layout, lambda: w.durable)
    seqs: list[int] = []
    seg, off = None, 0
    while True:
        b = tail.read(seg, off, 17)
        if not b.lines:
            break
        seqs.extend(s for s, _ in b.lines)
        seg, off = b.segment, b.offset
    assert seqs == list(range(w.sealer.seq))
    # written but not yet fsynced: not read
    w.append(Fields(arc.clock.now_ns(), "test", b"not durable yet"))
    w._spill()
    assert tail.read(seg, off, 10).lines == []
    w.flush(sync=True)
    assert [s for s, _ in tail.read(seg, off, 10).lines] == [w.sealer.seq - 1]
    w.close()


def test_messages_are_rfc5424_with_the_record_as_msg(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=30)
    fwd = forwarder(arc, "tcp://127.0.0.1:9", w=w)
    line = arc.layout.segments.joinpath(arc.layout.segment_names()[0]).read_bytes().split(b"\n")[1]
    msg = fwd._record(1, line)
    size, _, rest = msg.partition(b" ")
    assert int(size) == len(rest)
    p = parse_syslog(rest)
    assert p.error is None and p.syslog is not None
    assert p.message == line
    assert p.syslog["msgid"] == "record" and p.syslog["app"] == "auditd-py"
    ts = orjson.loads(line)["ts"]  # nine fraction digits in the record, six in RFC 5424
    assert p.syslog["timestamp"] == ts[:26] + "Z"
    sd = p.syslog["sd"]["auditd@32473"]
    assert sd["seq"] == "1" and sd["kind"] == "record" and len(sd["mac"]) == 64
    w.close()


def test_unreachable_collector_raises_and_keeps_the_cursor(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    build(arc, n=20).close()
    fwd = forwarder(arc, f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(ForwardError, match="cannot connect"):
        fwd.step()
    assert not cursor_path(arc.layout.state, "central").exists()
    assert fwd.floor() == 0


# ---------------------------------------------------------------- rsyslog as the collector


_COLLECTOR = """
global(workDirectory="@WORK@" maxMessageSize="4m" @GLOBAL@)
module(load="imtcp" @MODULE@)
template(name="adp" type="string" string="%structured-data% %msg%\\n")
ruleset(name="adp") { action(type="omfile" file="@OUT@" template="adp") }
input(type="imtcp" address="127.0.0.1" port="@PORT@" ruleset="adp")
"""


class Collector:
    """rsyslogd receiving octet-counted RFC 5424 on a free loopback port."""

    def __init__(
        self, tmp: Path, port: int, *, tls: dict[str, Path] | None = None, auth: str = "anon"
    ) -> None:
        assert RSYSLOGD is not None
        self.tmp, self.port, self.out = tmp, port, tmp / "collected.log"
        work = tmp / "rsyslog-work"
        work.mkdir(exist_ok=True)
        glob = mod = ""
        if tls is not None:
            glob = (
                f'DefaultNetstreamDriverCAFile="{tls["ca"]}" '
                f'DefaultNetstreamDriverCertFile="{tls["server"]}" '
                f'DefaultNetstreamDriverKeyFile="{tls["server.key"]}"'
            )
            mod = f'StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth}"'
        self.conf = tmp / "collector.conf"
        self.conf.write_text(
            _COLLECTOR.replace("@WORK@", str(work))
            .replace("@GLOBAL@", glob)
            .replace("@MODULE@", mod)
            .replace("@OUT@", str(self.out))
            .replace("@PORT@", str(port))
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert RSYSLOGD is not None
        self.log = open(self.tmp / "collector.out", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.tmp / "collector.pid")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.tmp / "collector.out").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("collector did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()

    def lines(self) -> int:
        try:
            return self.out.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def wait_lines(self, n: int, timeout: float = 20) -> None:
        assert wait_for(lambda: self.lines() >= n, timeout), (self.lines(), n)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    started: list[Collector] = []

    def start(
        port: int | None = None, tls: dict[str, Path] | None = None, auth: str = "anon"
    ) -> Collector:
        c = Collector(tmp_path, port or free_port(), tls=tls, auth=auth)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def rebuilt(arc: Arc, col: Collector, tmp: Path) -> Layout:
    got = collect([col.out], tmp / "rebuilt")
    assert list(got) == [info(arc).archive]
    return Layout.at(tmp / "rebuilt" / info(arc).archive)


def verify_copy(arc: Arc, layout: Layout, *, sealed: bool = True) -> None:
    for key in (arc.vk.mac_key, None):
        rep = verify_archive(
            layout, public_key=arc.pk.public_key, mac_key=key, require_sealed=sealed
        )
        assert rep.records == arc.verify().records


@needs_rsyslog
@pytest.mark.integration
def test_collector_copy_verifies_with_the_host_keys(
    tmp_path: Path, collector: Callable[..., Collector]
) -> None:
    arc = Arc(tmp_path)
    w = build(arc)
    w.close()
    col = collector()
    fwd = forwarder(arc, f"tcp://127.0.0.1:{col.port}")
    sent = drain(fwd)
    col.wait_lines(sent)
    layout = rebuilt(arc, col, tmp_path)
    verify_copy(arc, layout)
    # byte for byte: the same segments as on the host
    for name in arc.layout.segment_names():
        assert (layout.segments / name).read_bytes() == (arc.layout.segments / name).read_bytes()
    c = load_cursor(cursor_path(arc.layout.state, "central"), info(arc).archive)
    assert c.seq == w.sealer.seq and c.checkpoint == len(arc.layout.checkpoint_files())


@needs_rsyslog
@pytest.mark.integration
def test_tls_with_server_verification(
    tmp_path: Path,
    collector: Callable[..., Collector],
    pki: dict[str, Path],
) -> None:
    arc = Arc(tmp_path)
    build(arc, n=80).close()
    col = collector(tls=pki)
    good = ForwardTLS(ca=pki["ca"], server_name="localhost")
    fwd = forwarder(arc, f"tls://127.0.0.1:{col.port}", tls=good)
    sent = drain(fwd)
    col.wait_lines(sent)
    verify_copy(arc, rebuilt(arc, col, tmp_path))
    # a server the configured CA did not sign: refused before anything is sent
    arc2 = Arc(tmp_path / "other")
    build(arc2, n=5).close()
    bad = forwarder(arc2, f"tls://127.0.0.1:{col.port}", tls=ForwardTLS(ca=pki["evil-ca"]))
    with pytest.raises(ForwardError, match="TLS handshake"):
        bad.step()
    wrong = forwarder(
        arc2, f"tls://127.0.0.1:{col.port}", tls=ForwardTLS(ca=pki["ca"], server_name="evil.test")
    )
    with pytest.raises(ForwardError, match="TLS handshake"):
        wrong.step()


@needs_rsyslog
@pytest.mark.integration
def test_outage_loses_nothing_and_duplicates_are_harmless(
    tmp_path: Path, collector: Callable[..., Collector]
) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=120)
    w.flush(sync=True)
    col = collector()
    fwd = forwarder(arc, f"tcp://127.0.0.1:{col.port}", w=w)
    drain(fwd)
    col.stop()  # the collector goes away ...
    for i in range(200):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "test", b"during the outage %d" % i))
    w.rotate_segment("test")
    before = load_cursor(fwd.path, info(arc).archive)
    failures = 0
    for _ in range(5):
        try:
            fwd.step()
        except ForwardError:
            failures += 1
    assert failures >= 4
    after = load_cursor(fwd.path, info(arc).archive)
    assert after.seq <= before.seq + 40  # at most the batch in flight when it went
    assert fwd.lag()["records"] > 150
    col.start()  # ... and comes back on the same port
    # resend what the old cursor covered too: duplicates must be harmless
    fwd.cursor = before
    drain(fwd)
    w.close()
    drain(fwd)
    assert fwd.lag()["records"] == 0
    time.sleep(0.5)
    layout = rebuilt(arc, col, tmp_path)
    verify_copy(arc, layout)


# ---------------------------------------------------------------- the daemon


def daemon_config(arc: Arc, logs: Path, path: Path, port: int, **sections: Any) -> Path:
    doc = configs.daemon(
        arc,
        epoch_interval="1s",
        segments={"max_bytes": "64KiB"},
        sources=[configs.file_source(logs)],
        forward=[configs.syslog_forward(f"tcp://127.0.0.1:{port}", retry_max="1s")],
        **sections,
    )
    return configs.write(path, doc)


def app_lines(layout: Layout) -> list[str]:
    from auditd_py.store.reader import iter_records

    return [str(o["message"]) for _, o in iter_records(layout) if o["source"] == "app"]


@needs_rsyslog
@pytest.mark.integration
def test_daemon_forwards_through_an_outage(
    tmp_path: Path, collector: Callable[..., Collector]
) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    col = collector(port)
    mport = free_port()
    cfg = daemon_config(
        arc,
        logs,
        tmp_path / "d.yaml",
        port,
        retention={"max_segments": 2, "check_interval": "200ms"},
        metrics={"listen": f"127.0.0.1:{mport}"},
    )
    d = Daemon(tmp_path, cfg)
    n1, n2 = 1500, 3000
    try:
        d.ready()
        with (logs / "app.log").open("ab") as fh:
            fh.write(b"".join(syslog_line(i) + b"\n" for i in range(n1)))

        def copy_has(n: int) -> bool:
            if not col.out.exists():
                return False
            return col.out.read_bytes().count(b'"source":"app"') >= n

        assert wait_for(lambda: copy_has(n1), 30)
        col.stop()  # an outage: the daemon keeps sealing, retention waits
        for k in range(n1, n2, 150):  # in chunks: a segment per chunk or so
            with (logs / "app.log").open("ab") as fh:
                fh.write(b"".join(syslog_line(i) + b"\n" for i in range(k, k + 150)))
            time.sleep(0.15)
        assert wait_for(lambda: len([r for r in show(arc) if r["source"] == "app"]) >= n2 - n1, 30)
        time.sleep(1.5)
        segs_during = len(arc.layout.segment_names())
        assert segs_during > 2, "retention deleted segments the collector had not received"
        st = subprocess.run(
            [*CLI, "status", "--config", str(cfg)], capture_output=True, text=True, check=False
        )
        assert "forward central (syslog): DOWN for" in st.stdout, st.stdout
        assert "cannot connect" in st.stdout
        lag = int(st.stdout.split("; lag ", 1)[1].split(" records", 1)[0])
        assert lag >= n2 - n1, st.stdout
        col.start()
        assert wait_for(lambda: copy_has(n2), 60), (tmp_path / "daemon.stderr").read_text()[-3000:]
        assert wait_for(lambda: len(arc.layout.segment_names()) <= 3, 30)
    finally:
        # (the last records, the final checkpoint included, go out while stopping)
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-3000:]
    time.sleep(0.5)
    layout = rebuilt(arc, col, tmp_path)
    assert app_lines(layout) == [syslog_line(i).decode() for i in range(n2)]
    for key in (arc.vk.mac_key, None):
        verify_archive(layout, public_key=arc.pk.public_key, mac_key=key)
    # the host deleted old segments by retention; the collector's copy has all of them
    from auditd_py.store.reader import iter_records

    meta = [o.get("event") for _, o in iter_records(layout) if o["source"] == "auditd-py"]
    assert "forward.failed" in meta and "forward.recovered" in meta
    assert "retention.deleted" in meta and meta[-1] == "daemon.stopped"
    # the final checkpoint reached the collector too: the copy is sealed to its end
    for key in (arc.vk.mac_key, None):
        verify_archive(layout, public_key=arc.pk.public_key, mac_key=key, require_sealed=True)
    r = subprocess.run(
        [*CLI, "collect", str(col.out), "--out", str(tmp_path / "cli-out"), "--json"],
        capture_output=True,
        check=True,
    )
    doc = orjson.loads(r.stdout.splitlines()[0])
    assert doc["first_seq"] == 0 and doc["duplicates_dropped"] >= 0


def test_tls13_session_tickets_are_not_taken_for_a_closed_connection(
    tmp_path: Path,
    pki: dict[str, Path],
) -> None:
    """A TLS 1.3 server sends tickets after the handshake: readable, yet still open."""
    import ssl
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server"], pki["server.key"])
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got = bytearray()
    conns: list[socket.socket] = []

    def serve() -> None:
        c, _ = srv.accept()
        t = ctx.wrap_socket(c, server_side=True)
        conns.append(t)
        while chunk := t.recv(1 << 16):
            got.extend(chunk)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    arc = Arc(tmp_path)
    w = build(arc, n=300)
    w.close()
    fwd = forwarder(
        arc,
        f"tls://127.0.0.1:{srv.getsockname()[1]}",
        tls=ForwardTLS(ca=pki["ca"], server_name="localhost"),
        batch=50,
    )
    steps = 0
    while fwd.step():
        steps += 1
    assert steps > 3  # several batches over one connection, no false "closed"
    fwd.close()
    th.join(5)
    srv.close()
    assert got.count(b"[auditd@32473 ") == fwd.cursor.seq + fwd.cursor.checkpoint + 1


@needs_rsyslog
@pytest.mark.integration
def test_tls_client_certificate_when_the_collector_requires_one(
    tmp_path: Path,
    collector: Callable[..., Collector],
    pki: dict[str, Path],
) -> None:
    arc = Arc(tmp_path)
    build(arc, n=40).close()
    col = collector(tls=pki, auth="x509/certvalid")
    target = f"tls://127.0.0.1:{col.port}"
    anonymous = forwarder(arc, target, tls=ForwardTLS(ca=pki["ca"], server_name="localhost"))
    for _ in range(3):  # however the race between ack and rejection goes
        with pytest.raises(ForwardError):
            drain(anonymous)  # refused in the handshake, or the connection closed on us
    assert load_cursor(anonymous.path, info(arc).archive).seq == 0
    anonymous.close()
    client = ForwardTLS(
        ca=pki["ca"], server_name="localhost", cert=pki["client"], key=pki["client.key"]
    )
    fwd = forwarder(arc, target, tls=client)
    sent = drain(fwd)
    col.wait_lines(sent)
    verify_copy(arc, rebuilt(arc, col, tmp_path))


def test_a_collector_that_drops_a_new_connection_gets_nothing_counted(tmp_path: Path) -> None:
    """Its kernel acknowledged the bytes, then it closed: the batch is not delivered."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def reject() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            time.sleep(0.05)  # long enough for the kernel to acknowledge the batch
            c.close()

    th = threading.Thread(target=reject, daemon=True)
    th.start()
    arc = Arc(tmp_path)
    build(arc, n=10).close()
    fwd = forwarder(arc, f"tcp://127.0.0.1:{srv.getsockname()[1]}")
    try:
        for _ in range(3):
            with pytest.raises(ForwardError, match="closed"):
                fwd.step()
        assert not fwd.path.exists() and fwd.floor() == 0
    finally:
        stop.set()
        th.join(5)
        srv.close()
        fwd.close()
