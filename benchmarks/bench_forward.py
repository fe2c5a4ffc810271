"""Forwarding benchmark: catch-up of a sealed backlog to a real rsyslog collector.

Builds an archive of N records (~200-byte syslog-like lines; 1,000,000 by
default: about an hour of a busy host at 300 lines/s), then starts rsyslogd
(imtcp, octet counting; gtls for TLS) on a free loopback port writing to a
file, and runs the syslog forwarder over the whole backlog, once over plain TCP
and once over TLS. Prints, for each: records/s until every batch was
acknowledged, records/s until the collector's file held every line, and the
ratio to the sealing rate measured in the same run (goal: forwarding is never
the bottleneck of sealing, ratio > 1). Asserts nothing.

Usage: python benchmarks/bench_forward.py [--records N] [--batch N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from auditd_py.chain.encoding import Fields
from auditd_py.clock import ManualClock
from auditd_py.config import SyslogForward
from auditd_py.forward.base import ArchiveInfo
from auditd_py.forward.syslog import SyslogForwarder
from auditd_py.store.layout import Layout
from auditd_py.store.writer import ArchiveWriter, EpochPolicy, create_archive

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
COLLECTOR = """
global(workDirectory="{work}" maxMessageSize="4m" {glob})
module(load="imtcp" {mod})
template(name="adp" type="string" string="%structured-data% %msg%\\n")
ruleset(name="adp") {{ action(type="omfile" file="{out}" template="adp"
  asyncWriting="on" ioBufferSize="1m" flushOnTXEnd="off") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="adp")
"""


class Meta:
    def event(self, name: str, message: str, **fields: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(root: Path, n: int) -> tuple[Layout, float]:
    layout = Layout.at(root / "archive")
    clock = ManualClock()
    create_archive(layout, root / "v.key", root / "p.key", host="bench", now_ns=clock.now_ns())
    w = ArchiveWriter.open(layout, clock, EpochPolicy(interval_ns=60 * 10**9))
    t0 = time.perf_counter()
    batch: list[Fields] = []
    for i in range(n):
        clock.t += 3_000_000  # 300 lines/s of wall time
        msg = (
            b"<30>Nov 26 10:00:%02d web-%d nginx[%d]: 10.0.%d.%d - - "
            b'"GET /api/v1/items?page=%d HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux)"'
            % (i % 60, i % 4, 1000 + i % 50, i % 255, i % 7, i, i * 37 % 90000)
        )
        batch.append(Fields(clock.t, "app", msg))
        if len(batch) == 2000:
            w.append_many(batch)
            batch = []
            if w.offset > 64 << 20:
                w.rotate_segment("size")
    if batch:
        w.append_many(batch)
    w.close()
    return layout, n / (time.perf_counter() - t0)


def pki(d: Path) -> dict[str, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    (d / "s.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "7", "-days", "2", "-out", "server.pem", "-extfile", "s.ext")  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


def forwarder(
    layout: Layout, n: int, port: int, tls: dict[str, Path] | None, batch: int, state: Path
) -> SyslogForwarder:
    """The syslog forwarder over the whole backlog, with a fresh cursor in ``state``."""
    ident = layout.read_identity()
    obj = orjson.loads(ident)
    settings = SyslogForward.model_validate(
        {
            "name": "bench",
            "type": "syslog",
            "target": f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}",
            "tls": {"ca": str(tls["ca"]), "server_name": "localhost"} if tls else None,
            "batch_records": batch,
        }
    )
    state.mkdir()
    return SyslogForwarder(
        settings,
        layout,
        ArchiveInfo(obj["archive"], obj["host"], "bench", ident),
        state,
        durable=lambda: None,
        head=lambda: n,
        meta=Meta(),
    )


def run_one(root: Path, layout: Layout, n: int, tls: dict[str, Path] | None, batch: int) -> None:
    work = root / f"work-{'tls' if tls else 'tcp'}"
    work.mkdir()
    out = work / "collected.log"
    port = free_port()
    glob = mod = ""
    if tls is not None:
        glob = (
            f'DefaultNetstreamDriverCAFile="{tls["ca"]}" '
            f'DefaultNetstreamDriverCertFile="{tls["cert"]}" '
            f'DefaultNetstreamDriverKeyFile="{tls["key"]}"'
        )
        mod = 'StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
    conf = work / "rsyslog.conf"
    conf.write_text(COLLECTOR.format(work=work, glob=glob, mod=mod, out=out, port=port))
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        fwd = forwarder(layout, n, port, tls, batch, work / "state")
        t0 = time.perf_counter()
        sent = 0
        while True:
            k = fwd.step()
            if k == 0:
                break
            sent += k
        acked = time.perf_counter() - t0
        want = sent
        while True:
            try:
                have = out.stat().st_size and out.read_bytes().count(b"\n")
            except FileNotFoundError:
                have = 0
            if have >= want or time.perf_counter() - t0 > acked + 120:
                break
            time.sleep(0.2)
        landed = time.perf_counter() - t0
        fwd.close()
        mb = fwd.sent_bytes / 1e6
        kind = "TLS" if tls else "TCP"
        print(
            f"{kind:>3}: {sent} messages, {mb:.0f} MB: acknowledged in {acked:.1f}s "
            f"({n / acked:,.0f} records/s, {mb / acked:.1f} MB/s); in the collector's file "
            f"after {landed:.1f}s ({n / landed:,.0f} records/s; {have}/{want} lines)"
        )
        RESULTS[f"{kind} to rsyslog"] = n / acked
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


RESULTS: dict[str, float] = {}

DISCARD = r"""
import socket, ssl, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
ctx = None
if len(sys.argv) > 1:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
while True:
    c, _ = srv.accept()
    if ctx is not None:
        c = ctx.wrap_socket(c, server_side=True)
    while c.recv(1 << 20):
        pass
"""


def run_discard(
    root: Path, layout: Layout, n: int, tls: dict[str, Path] | None, batch: int
) -> None:
    """The forwarder alone: a peer that reads and discards (what rsyslog costs aside)."""
    args = [sys.executable, "-c", DISCARD] + ([str(tls["cert"]), str(tls["key"])] if tls else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        kind = "tls" if tls else "tcp"
        fwd = forwarder(layout, n, port, tls, batch, root / f"state-discard-{kind}")
        t0 = time.perf_counter()
        while fwd.step():
            pass
        dt = time.perf_counter() - t0
        fwd.close()
        kind = "TLS" if tls else "TCP"
        print(
            f"{kind} to a discarding peer: {n / dt:,.0f} records/s, "
            f"{fwd.sent_bytes / 1e6 / dt:.1f} MB/s"
        )
        RESULTS[f"{kind} (forwarder alone)"] = n / dt
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=2000)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-forward-"))
    try:
        layout, seal_rate = build(root, a.records)
        size = sum(p.stat().st_size for _, p in layout.segment_files())
        print(
            f"backlog: {a.records:,} records, {size / 1e6:.0f} MB sealed at "
            f"{seal_rate:,.0f} records/s (single-threaded writer, no fsync per batch)"
        )
        d = root / "pki"
        d.mkdir()
        keys = pki(d)
        run_one(root, layout, a.records, None, a.batch)
        run_one(root, layout, a.records, keys, a.batch)
        run_discard(root, layout, a.records, None, a.batch)
        run_discard(root, layout, a.records, keys, a.batch)
        for kind, rate in RESULTS.items():
            verdict = "PASS" if rate > seal_rate else "MISS"
            print(
                f"{kind}: forwarding/sealing = {rate / seal_rate:.2f} "
                f"({verdict}: forwarding must not be the bottleneck)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
