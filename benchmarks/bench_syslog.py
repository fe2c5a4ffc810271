"""Syslog source benchmark, in process: the server's event loop → framing →
parsing → records into a sink that takes everything (no sealer, no disk).

One TCP connection per row sends N frames in one go; the row's time runs from
the first byte sent to the last record in the sink. Rows: RFC 5424
octet-counted (rsyslog's RSYSLOG_SyslogProtocol23Format), RFC 3164 LF-framed
(the traditional templates, logger), Python SysLogHandler (NUL-terminated, no
header).

Each row is run ``--reps`` times and the best is printed: on a shared machine the
best of several runs is the one least disturbed. The anchor is ``bytes.split``
of the same LF stream, measured in the same run, so that the ratio printed
compares across machines and runs. To compare two trees, run it twice with
PYTHONPATH set to each.

Usage: python benchmarks/bench_syslog.py [--frames N] [--reps R]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any

from auditd_py.clock import SystemClock
from auditd_py.config import SyslogSource
from auditd_py.record import Fields
from auditd_py.sources.syslog import SyslogServer

PAD = b"x" * 80


class CountSink:
    def __init__(self) -> None:
        self.n = 0
        self.done = threading.Event()
        self.want = 0

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        self.n += len(batch)
        if self.n >= self.want:
            self.done.set()
        return True

    def room(self) -> int:
        return 1 << 30


class NoMeta:
    def event(self, name: str, message: str, **fields: Any) -> None:
        pass


def frames(kind: str, n: int) -> list[bytes]:
    if kind == "rfc5424":
        return [
            b"<134>1 2026-11-26T10:00:00Z qa-web-1 app %d - - request %d served ok %s"
            % (1000 + i % 100, i, PAD)
            for i in range(n)
        ]
    if kind == "python":
        return [b"<12>request %d served ok %s" % (i, PAD) for i in range(n)]
    return [
        b"<30>Nov 26 10:00:%02d web-%d nginx[%d]: request %d served ok %s"
        % (i % 60, i % 4, 1000 + i % 100, i, PAD)
        for i in range(n)
    ]


def stream(kind: str, msgs: list[bytes]) -> bytes:
    if kind == "rfc5424":
        return b"".join(b"%d %s" % (len(m), m) for m in msgs)
    if kind == "python":
        return b"".join(m + b"\x00" for m in msgs)
    return b"".join(m + b"\n" for m in msgs)


def run(kind: str, n: int) -> float:
    """Frames per second for one row, one run."""
    listen = "tcp://127.0.0.1:0"
    srv = SyslogServer(SyslogSource(name="b", type="syslog", listen=[listen]), SystemClock())
    sink = CountSink()
    sink.want = n
    srv.start(sink, NoMeta(), {})
    try:
        port = int(srv.bound[0].rsplit(":", 1)[1])
        msgs = frames(kind, n)
        data = stream(kind, msgs)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(data)
        if not sink.done.wait(120):
            raise SystemExit(f"{kind}: only {sink.n} of {n} records")
        return n / (time.perf_counter() - t0)
    finally:
        srv.stop()


def anchor(n: int) -> float:
    data = stream("rfc3164", frames("rfc3164", n))
    t0 = time.perf_counter()
    for _ in range(20):
        data.split(b"\n")
    return 20 * n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    base = max(anchor(a.frames) for _ in range(a.reps))
    print(f"anchor (bytes.split of the LF stream): {base:,.0f} frames/s")
    rows = [
        ("TCP RFC 5424 octet-counted", "rfc5424"),
        ("TCP RFC 3164 LF-framed", "rfc3164"),
        ("TCP Python SysLogHandler (NUL)", "python"),
    ]
    for label, kind in rows:
        best = max(run(kind, a.frames) for _ in range(a.reps))
        print(f"{label}: {best:,.0f} frames/s (ratio to anchor {best / base:.5f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
