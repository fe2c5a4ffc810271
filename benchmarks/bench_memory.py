"""Memory benchmark: the daemon's peak RSS under input that used to grow it without bound.

Runs the real daemon (``auditd-py run``) as a subprocess for ``--seconds``
(30 by default) per case and samples its peak RSS (``VmHWM``) against the goal
of issue 14 (256 MB), with the memory of an idle daemon measured in the same
run as the anchor:

* ``long-lines``: a writer appends 8 MiB lines (longer than ``max_line_bytes``:
  sealed in pieces) to a watched file as fast as it can; the file is rotated
  every 256 MiB and old segments are retired by retention, so the disk stays
  bounded;
* ``syslog-frames``: four TCP senders loop 64 KiB octet-counted frames.

It prints the numbers, the ratio to the idle anchor and PASS/MISS against the
goal; it asserts nothing.

Usage: python benchmarks/bench_memory.py [--seconds N] [--case long-lines|syslog-frames|all]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from auditd_py.errors import ArchiveError
from auditd_py.store.immutable import release

CLI = [sys.executable, "-m", "auditd_py.cli"]
GOAL = 256 * 1000 * 1000
LONG = 8 * 1024 * 1024
FRAME = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def remove(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with contextlib.suppress(ArchiveError, OSError):
                release(p)
    shutil.rmtree(root, ignore_errors=True)


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        arc = root / "archive"
        subprocess.run(
            [
                *(*CLI, "keygen", "--archive", str(arc)),
                *("--verify-key", str(root / "vk"), "--public-key", str(root / "pk")),
            ],
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        cfg = root / "c.yaml"
        cfg.write_text(
            f"""environment: bench
archive: {{path: {arc}}}
segments: {{max_bytes: 64MiB, compress: none, immutable: off}}
retention: {{max_total_bytes: 512MiB, check_interval: 1s}}
sources:
  - {{name: app, type: file, paths: ["{self.logs}/*.log"], poll_interval: 100ms}}
  - {{name: net, type: syslog, listen: ["tcp://127.0.0.1:{self.port}"]}}
"""
        )
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(root / "stderr").open("wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise SystemExit("the daemon did not start")

    def hwm(self) -> int:
        """Peak RSS so far, in bytes."""
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def long_lines(d: Daemon, stop: threading.Event) -> int:
    """Append 8 MiB lines as fast as possible, rotating the file every 256 MiB."""
    log = d.logs / "app.log"
    chunk = b"y" * (1 << 20)
    written = 0
    while not stop.is_set():
        with log.open("ab") as fh:
            for _ in range(32):  # 32 lines of 8 MiB: 256 MiB, then rotate
                for _ in range(LONG // len(chunk)):
                    fh.write(chunk)
                fh.write(b"\n")
                written += LONG + 1
                if stop.is_set():
                    return written
        log.replace(d.logs / "app.log.1")  # off the glob: read to its end, then released
    return written


def syslog_frames(d: Daemon, stop: threading.Event) -> int:
    """Four TCP senders looping 64 KiB octet-counted frames."""
    body = b"<14>1 2026-11-26T10:00:00Z h app - - - " + b"z" * (FRAME - 40)
    frame = b"%d " % len(body) + body
    sent = [0] * 4

    def sender(i: int) -> None:
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.settimeout(1.0)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    s.sendall(frame)
                    sent[i] += len(frame)

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(5)
    return sum(sent)


CASES: dict[str, Callable[[Daemon, threading.Event], int]] = {
    "long-lines": long_lines,
    "syslog-frames": syslog_frames,
}


def run_case(name: str, seconds: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="adp-bench-memory-"))
    d = Daemon(root)
    try:
        time.sleep(2)
        idle = d.hwm()
        stop = threading.Event()
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(CASES[name](d, stop)), daemon=True)
        t0 = time.monotonic()
        t.start()
        peak = idle
        while time.monotonic() - t0 < seconds and d.proc.poll() is None:
            time.sleep(0.5)
            peak = max(peak, d.hwm())
        stop.set()
        t.join(30)
        alive = d.proc.poll() is None
        mb = (result[0] if result else 0) / 1e6
        print(
            f"{name}: peak RSS {peak / 1e6:,.0f} MB over {seconds:g}s "
            f"({mb / seconds:,.0f} MB/s offered; idle anchor {idle / 1e6:,.0f} MB, "
            f"ratio {peak / idle:.2f}) (goal < {GOAL / 1e6:.0f} MB: "
            f"{'PASS' if peak < GOAL and alive else 'MISS'}){'' if alive else ' DAEMON DIED'}",
            flush=True,
        )
    finally:
        d.stop()
        remove(root)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    a = ap.parse_args()
    print(f"auditd-py memory benchmark ({os.cpu_count()} CPUs)")
    for name in CASES if a.case == "all" else [a.case]:
        run_case(name, a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
