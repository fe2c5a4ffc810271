"""Daemon benchmark: file source → sealed archive, latency, memory, idle CPU, syslog.

Runs the real daemon (``auditd-py run``) as a subprocess and measures:

1. throughput: N lines of ~200 bytes appended to a file as fast as a writer
   can; sustained lines/s from the first write until the last line is in the
   archive;
2. latency at a steady 10k lines/s: each line carries its write time; a
   watcher tails the archive segment and notes when each line appears (the
   sealer writes and fsyncs in one group commit); p50/p99/max;
3. the daemon's peak RSS (VmHWM) and its CPU use while idle;
4. syslog over TCP, one connection: lines/s of octet-counted RFC 5424 and of
   LF-framed RFC 3164 (``--syslog-only`` runs just these two rows; to compare
   two trees in one run, start it twice with PYTHONPATH set to each).

It prints numbers and PASS/MISS against the goals; it asserts nothing.
With ``--rotate-bytes SIZE`` the archive's open segment is rotated at SIZE
(``segments.max_bytes``) and closed segments are compressed (``--compress``,
zstd by default); the run also prints the rotation pauses (p50, p99 and max,
from the daemon's /health; during the throughput phase and over the whole run)
and the compressed size of the closed segments. Without it, segments are never
rotated (the baseline). ``--baseline`` first measures the throughput of a
daemon that never rotates nor compresses, and prints the ratio.

Every run also prints where ingestion stopped, as producers saw it: the longest
time a source's ``put()`` waited for room in the queue, the longest group
commit, and the longest time a record waited from the queue to being durable.

With ``--goals`` (what ``make bench`` runs) it prints only the daemon rows of
issue 13's goal table, medians of ``--runs``: file source → sealed, syslog over
four TCP connections at once → sealed, and the peak RSS with rotation and
compression, against the reference loop of bench_seal_verify.py run in between.

Usage: python benchmarks/bench_daemon.py [--lines N] [--quick] [--rotate-bytes SIZE]
       [--compress zstd|gzip|none] [--baseline] [--goals [--runs N]]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import orjson

from auditd_py.errors import ArchiveError
from auditd_py.store.compress import open_segment
from auditd_py.store.immutable import release

CLI = [sys.executable, "-m", "auditd_py.cli"]
TEXT = b"GET /api/v1/items?page=%d status=200 bytes=%d upstream=10.0.0.%d ua=Mozilla/5.0 "
PAD = b"x" * 80


def line(i: int) -> bytes:
    return (
        b"2026-11-26T10:00:00Z qa-web-1 app[%d]: " % (1000 + i % 9000)
        + (TEXT % (i, i * 7 % 100000, i % 255))
        + PAD[: 200 - 100 - len(str(i))]
        + b"\n"
    )


def remove(root: Path) -> None:
    """Delete a run's directory, lifting the chattr +a/+i flags the daemon set first."""
    for p in root.rglob("*"):
        if p.is_file():
            with contextlib.suppress(ArchiveError, OSError):
                release(p)
    shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Run:
    def __init__(
        self, root: Path, port: int, rotate_bytes: str | None = None, compress: str = "zstd"
    ) -> None:
        self.root = root
        self.arc = root / "archive"
        self.logs = root / "logs"
        self.logs.mkdir()
        subprocess.run(
            [
                *CLI,
                "keygen",
                "--archive",
                str(self.arc),
                "--verify-key",
                str(root / "vk"),
                "--public-key",
                str(root / "pk"),
            ],
            check=True,
            capture_output=True,
        )
        self.cfg = root / "c.yaml"
        self.metrics_port = free_port()
        if rotate_bytes is None:
            segments = "segments: {max_bytes: 1000GiB, max_age: 3650d, compress: none}"
        else:
            segments = f"segments: {{max_bytes: {rotate_bytes}, compress: {compress}}}"
        self.cfg.write_text(
            f"""environment: bench
archive:
  path: {self.arc}
{segments}
metrics:
  listen: 127.0.0.1:{self.metrics_port}
sources:
  - name: app
    type: file
    paths: ["{self.logs}/*.log"]
    poll_interval: 1s
  - name: syslog
    type: syslog
    listen: ["tcp://127.0.0.1:{port}"]
"""
        )
        self.port = port
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(self.cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(root / "stderr").open("wb"),
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)

    def segment(self) -> Path:
        segs = sorted(p for p in (self.arc / "segments").iterdir() if p.suffix == ".jsonl")
        return segs[-1]

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                doc: dict[str, Any] = orjson.loads(resp.read())
        except OSError as exc:
            body = getattr(exc, "read", None)
            if body is None:
                raise
            doc = orjson.loads(body())
        return doc

    def wait_count(self, marker: bytes, n: int, timeout: float, start: Path | None = None) -> float:
        """Tail the archive from ``start`` (taken before the lines were sent; default:
        the open segment) on, following rotations, until ``n`` lines containing
        ``marker`` have been sealed."""
        deadline = time.monotonic() + timeout
        seen = 0
        buf = b""
        cur = start or self.segment()
        fh: IO[bytes] = open_segment(self._file_of(cur))
        try:
            while time.monotonic() < deadline:
                data = fh.read(1 << 20)
                if not data:
                    nxt = self._next_segment(cur)
                    if nxt is None:
                        time.sleep(0.01)
                        continue
                    rest = fh.read()  # the closed segment's last bytes
                    if rest:
                        nxt[1].close()
                        data = rest
                    else:
                        fh.close()
                        cur, fh = nxt
                        continue
                buf += data
                cut = buf.rfind(b"\n") + 1
                seen += buf.count(marker, 0, cut)
                buf = buf[cut:]
                if seen >= n:
                    return time.monotonic()
        finally:
            fh.close()
        raise SystemExit(f"timed out waiting for {n} records (saw {seen})")

    def _file_of(self, seg: Path) -> Path:
        for p in (seg, seg.with_name(seg.name + ".zst"), seg.with_name(seg.name + ".gz")):
            if p.exists():
                return p
        return seg

    def _next_segment(self, cur: Path) -> tuple[Path, IO[bytes]] | None:
        num = int(cur.name[4:14]) + 1
        base = self.arc / "segments" / f"seg-{num:010d}.jsonl"
        for p in (base, base.with_name(base.name + ".zst"), base.with_name(base.name + ".gz")):
            try:
                return base, open_segment(p)
            except FileNotFoundError:
                continue
        return None

    def compressed_ratio(self) -> tuple[int, int, int] | None:
        """(closed segments compressed, their plain bytes, their compressed bytes)."""
        files = [p for p in (self.arc / "segments").iterdir() if p.suffix in (".zst", ".gz")]
        if not files:
            return None
        plain = comp = 0
        for p in files:
            comp += p.stat().st_size
            with open_segment(p) as fh:
                while chunk := fh.read(1 << 20):
                    plain += len(chunk)
        return len(files), plain, comp

    def status(self, key: str) -> int:
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith(key + ":"):
                return int(row.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def throughput(r: Run, n: int, tag: bytes = b"") -> float:
    """Lines/s from the first write of ``n`` lines to the last one sealed; ``tag``
    (put before every line) tells this round's records from earlier ones."""
    path = r.logs / "a.log"
    chunk = 10_000
    data = [  # generated before the clock starts: the writer must not be the bottleneck
        b"".join(tag + line(i) for i in range(start, min(n, start + chunk)))
        for start in range(0, n, chunk)
    ]
    start = r.segment()
    t0 = time.monotonic()
    with path.open("ab") as fh:
        for block in data:
            fh.write(block)
            fh.flush()
    t1 = r.wait_count(tag or b'"source":"app"', n, 600, start)
    print(f"  writer done in {time.monotonic() - t0:.2f}s; all sealed at {t1 - t0:.2f}s")
    return n / (t1 - t0)


def latency(r: Run, rate: int, seconds: float) -> list[float]:
    path = r.logs / "lat.log"
    seg = r.segment()
    seen: dict[int, float] = {}
    stop = threading.Event()

    def watch() -> None:
        cur = seg
        fh: IO[bytes] = seg.open("rb")
        try:
            fh.seek(0, os.SEEK_END)
            buf = b""
            while not stop.is_set() or buf:
                data = fh.read()
                if not data:
                    nxt = r._next_segment(cur)  # rotated: follow it
                    if nxt is not None and not (data := fh.read()):
                        fh.close()
                        cur, fh = nxt
                        continue
                if not data:
                    if stop.is_set():
                        break
                    time.sleep(0.001)
                    continue
                now = time.time_ns()
                buf += data
                lines = buf.split(b"\n")
                buf = lines.pop()
                for ln in lines:
                    i = ln.find(b"LAT ")
                    if i >= 0:
                        seen[int(ln[i + 4 : i + 23])] = now
        finally:
            fh.close()

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    sent: list[int] = []
    per_tick = rate // 100
    t_end = time.monotonic() + seconds
    with path.open("ab") as fh:
        next_tick = time.monotonic()
        while time.monotonic() < t_end:
            batch = []
            for _ in range(per_tick):
                t = time.time_ns()
                sent.append(t)
                batch.append(b"LAT %019d " % t + PAD + b"\n")
            fh.write(b"".join(batch))
            fh.flush()
            next_tick += 0.01
            time.sleep(max(0.0, next_tick - time.monotonic()))
    deadline = time.monotonic() + 10
    while len(seen) < len(set(sent)) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    w.join()
    return [(seen[t] - t) / 1e6 for t in sent if t in seen]


def syslog_tcp(r: Run, n: int) -> float:
    msgs = [
        b"<134>1 2026-11-26T10:00:00Z qa-web-1 app %d - - SYSLOGTCP request %d served ok "
        % (1000 + i % 100, i)
        + PAD
        for i in range(n)
    ]
    frames = b"".join(b"%d %s" % (len(m), m) for m in msgs)
    start = r.segment()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", r.port)) as s:
        s.sendall(frames)
    t1 = r.wait_count(b"SYSLOGTCP", n, 600, start)
    return n / (t1 - t0)


def syslog_tcp_lf(r: Run, n: int) -> float:
    """LF-framed RFC 3164 as rsyslog's traditional templates and logger send it."""
    frames = b"".join(
        b"<30>Nov 26 10:00:%02d web-%d nginx[%d]: SYSLOGLF request %d served ok %s\n"
        % (i % 60, i % 4, 1000 + i % 100, i, PAD)
        for i in range(n)
    )
    start = r.segment()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", r.port)) as s:
        s.sendall(frames)
    t1 = r.wait_count(b"SYSLOGLF", n, 600, start)
    return n / (t1 - t0)


def syslog_rows(r: Run, n: int) -> None:
    st = syslog_tcp(r, n)
    print(f"syslog TCP (octet-counted, one connection, {n:,} lines): {st:,.0f} lines/s")
    st = syslog_tcp_lf(r, n)
    print(f"syslog TCP (LF-framed RFC 3164, one connection, {n:,} lines): {st:,.0f} lines/s")


def syslog_tcp_conns(r: Run, n: int, conns: int, tag: bytes) -> float:
    """Lines/s of ``n`` octet-counted frames sent over ``conns`` connections at once."""
    per = n // conns
    blobs = []
    for c in range(conns):
        msgs = [
            b"<134>1 2026-11-26T10:00:00Z qa-web-%d app %d - - %s request %d served ok "
            % (c, 1000 + i % 100, tag, i)
            + PAD
            for i in range(per)
        ]
        blobs.append(b"".join(b"%d %s" % (len(m), m) for m in msgs))
    start = r.segment()
    socks = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(conns)]
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=s.sendall, args=(b,)) for s, b in zip(socks, blobs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        t1 = r.wait_count(tag, per * conns, 600, start)
    finally:
        for s in socks:
            s.close()
    return per * conns / (t1 - t0)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


PAUSE_GOAL_MS = 100.0


def report_stalls(doc: dict[str, Any], phase: str, rotating: bool) -> None:
    """Rotation pauses and the producers' view of ingestion gaps, from /health."""
    sealer = doc.get("sealer", {})
    if rotating:
        rp = sealer.get("rotation_pause_ms") or {}
        mx = float(rp.get("max", sealer.get("max_rotation_pause_ms") or 0.0))
        print(
            f"  rotation pauses ({phase}): {sealer.get('rotations')} rotations, "
            f"p50 {rp.get('p50', 0.0):.1f} ms, p99 {rp.get('p99', 0.0):.1f} ms, max {mx:.1f} ms "
            f"= {mx / PAUSE_GOAL_MS:.2f} of the goal (max < {PAUSE_GOAL_MS:.0f} ms: "
            f"{'PASS' if mx < PAUSE_GOAL_MS else 'MISS'}); "
            f"{sealer.get('rotations_postponed', 0)} turns postponed for the compressor"
        )
    print(
        f"  ingestion gaps ({phase}): a producer's put() waited at most "
        f"{doc.get('max_put_wait_ms', 0.0):.1f} ms; longest group commit "
        f"{sealer.get('max_commit_ms', 0.0):.1f} ms; longest record wait (queue → durable) "
        f"{sealer.get('max_seal_latency_ms', 0.0):.1f} ms"
    )


def reference_lps(n: int, work: Path) -> float:
    """The anchor: bench_seal_verify's reference loop over ``n`` of these lines, in a child."""
    src, out = work / "ref-in.log", work / "ref-out.log"
    if not src.exists():
        src.write_bytes(b"".join(line(i) for i in range(n)))
    me = Path(__file__).with_name("bench_seal_verify.py")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(me), "--reference-worker", str(src), str(out)], check=True)
    seconds = time.perf_counter() - t0
    out.unlink()
    return n / seconds


def goals(n: int, runs: int, rotate: str, compress: str) -> int:
    """The daemon rows of issue 13's goal table: medians of ``runs``, with the anchor."""
    work = Path(tempfile.mkdtemp(prefix="adp-bench-ref-"))
    root = Path(tempfile.mkdtemp(prefix="adp-bench-daemon-"))
    r = Run(root, free_port(), rotate, compress)
    ref, files, tcp = [], [], []
    try:
        for k in range(runs):
            ref.append(reference_lps(n, work))
            files.append(throughput(r, n, b"RUN%dFILE " % k))
            tcp.append(syslog_tcp_conns(r, n, 4, b"RUN%dTCP" % k))
            print(
                f"run {k + 1}/{runs}: reference {ref[-1]:,.0f}  files {files[-1]:,.0f}  "
                f"syslog x4 {tcp[-1]:,.0f} lines/s",
                flush=True,
            )
        rss = r.status("VmHWM") / 1024
    finally:
        r.stop()
        remove(root)
        shutil.rmtree(work, ignore_errors=True)
    anchor = statistics.median(ref)
    print(f"\ndaemon goals of issue 13 ({n:,} lines a run, median of {runs}; rotation at {rotate},")
    print(f"{compress} compression; anchor: the reference loop, {anchor:,.0f} lines/s this run)")
    for label, xs, goal in (
        ("daemon, files → sealed", files, 250_000),
        ("daemon, syslog TCP, 4 connections → sealed", tcp, 150_000),
    ):
        m = statistics.median(xs)
        print(
            f"  {label:<44} {m:>9,.0f} lines/s = {m / anchor:.2f} × reference  "
            f"goal ≥ {goal:,}  {'PASS' if m >= goal else 'MISS'}"
        )
    print(
        f"  {'daemon peak RSS with rotation':<44} {rss:>9.0f} MB  goal < 150 MB  "
        f"{'PASS' if rss < 150 else 'MISS'}"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100k lines, short phases")
    ap.add_argument(
        "--rotate-bytes", metavar="SIZE", help="segments.max_bytes (e.g. 10MB); default: never"
    )
    ap.add_argument("--compress", choices=["zstd", "gzip", "none"], default="zstd")
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="first measure the throughput of a daemon that never rotates, and print the ratio",
    )
    ap.add_argument("--syslog-only", action="store_true", help="only the syslog rows")
    ap.add_argument(
        "--goals", action="store_true", help="only the goal rows of issue 13 (make bench)"
    )
    ap.add_argument("--runs", type=int, default=3, help="rounds for --goals (medians)")
    a = ap.parse_args()
    n = 100_000 if a.quick else a.lines
    sys_n = 20_000 if a.quick else 200_000
    if a.goals:
        return goals(n, a.runs, a.rotate_bytes or "64MB", a.compress)
    if a.syslog_only:
        root = Path(tempfile.mkdtemp(prefix="adp-bench-daemon-"))
        r = Run(root, free_port())
        try:
            syslog_rows(r, sys_n)
        finally:
            r.stop()
            remove(root)
        return 0
    base: float | None = None
    if a.baseline:
        root0 = Path(tempfile.mkdtemp(prefix="adp-bench-daemon-"))
        r0 = Run(root0, free_port())
        try:
            print("baseline (never rotated, not compressed):")
            base = throughput(r0, n)
            print(f"  file source → sealed: {base:,.0f} lines/s")
        finally:
            r0.stop()
            remove(root0)
    root = Path(tempfile.mkdtemp(prefix="adp-bench-daemon-"))
    r = Run(root, free_port(), a.rotate_bytes, a.compress)
    if a.rotate_bytes:
        print(f"rotating segments at {a.rotate_bytes}, compression {a.compress}")
    try:
        print(f"auditd-py daemon benchmark ({os.cpu_count()} CPUs)")
        tput = throughput(r, n)
        print(
            f"file source → sealed: {tput:,.0f} lines/s  (goal ≥ 100,000: "
            f"{'PASS' if tput >= 100_000 else 'MISS'})"
        )
        if base is not None:
            print(
                f"  throughput ratio to the baseline: {tput / base:.3f} "
                f"(goal ≥ 0.85: {'PASS' if tput >= 0.85 * base else 'MISS'})"
            )
        report_stalls(r.health(), "throughput phase", bool(a.rotate_bytes))
        lat = latency(r, 10_000, 3 if a.quick else 10)
        p50, p99, mx = pct(lat, 50), pct(lat, 99), max(lat)
        print(
            f"latency at 10k lines/s over {len(lat):,} lines: p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {mx:.1f} ms, mean {statistics.mean(lat):.1f} ms  "
            f"(goal p99 < 250 ms: {'PASS' if p99 < 250 else 'MISS'})"
        )
        time.sleep(2)
        c0 = r.cpu_seconds()
        idle = 5 if a.quick else 20
        time.sleep(idle)
        cpu = (r.cpu_seconds() - c0) / idle * 100
        print(
            f"idle CPU: {cpu:.2f}% of one core over {idle}s  "
            f"(goal < 1%: {'PASS' if cpu < 1 else 'MISS'})"
        )
        syslog_rows(r, sys_n)
        rss = r.status("VmHWM") / 1024
        print(f"daemon peak RSS: {rss:.0f} MB  (goal < 150 MB: {'PASS' if rss < 150 else 'MISS'})")
        doc = r.health()
        sealer = doc.get("sealer", {})
        print(
            f"segment rotations: {sealer.get('rotations')}, longest rotation pause: "
            f"{sealer.get('max_rotation_pause_ms')} ms"
        )
        report_stalls(doc, "whole run", bool(a.rotate_bytes))
        if a.rotate_bytes:
            time.sleep(3)  # let the compressor finish the last closed segment
            cr = r.compressed_ratio()
            if cr is not None:
                k, plain, comp = cr
                print(
                    f"compressed segments ({a.compress}): {k}, {plain / 1e6:.1f} MB → "
                    f"{comp / 1e6:.1f} MB ({100 * comp / plain:.1f}% of plain; goal ≤ 25%: "
                    f"{'PASS' if comp <= 0.25 * plain else 'MISS'})"
                )
    finally:
        r.stop()
        remove(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
