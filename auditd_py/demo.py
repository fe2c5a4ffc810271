"""``make demo``: the daemon on the dev config, then a tamper caught.

1. creates an archive and its keys under ``demo-out/``;
2. starts ``auditd-py run --config config/dev.yaml`` with a generated, growing
   log and a loopback syslog port, and shows progress while lines are sealed;
3. stops it with SIGTERM (a clean stop ends with a checkpoint);
4. verifies with the secret key and, as an auditor, with the public key;
5. seals a CI job's output through ``auditd-py seal``;
6. edits one record in a copy and shows both verifiers catching it.

It runs the real command-line tool and narrates each step.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from auditd_py.store.immutable import release_tree

HOSTS = ["qa-web-1", "qa-web-2", "qa-db-1"]
APPS = ["nginx", "app", "postgres", "sshd", "cron"]
WORDS = [
    *("request", "served", "user", "login", "failed", "ok"),
    *("timeout", "retry", "session", "cache", "miss", "hit"),
]
DEV_CONFIG = """\
environment: dev
archive:
  path: ${AUDITD_ARCHIVE:-demo-out/daemon/archive}
sealing:
  epoch_interval: 30s
sources:
  - name: app
    type: file
    paths: ["${AUDITD_LOGS:-demo-out/daemon/logs}/*.log*"]
    poll_interval: 250ms
  - name: syslog
    type: syslog
    listen: ["udp://127.0.0.1:${AUDITD_SYSLOG_PORT:-5514}", "tcp://127.0.0.1:${AUDITD_SYSLOG_PORT:-5514}"]
"""
CLI = [sys.executable, "-m", "auditd_py.cli"]


def _line(rnd: random.Random, i: int) -> bytes:
    words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 12)))
    return (
        f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}Z {rnd.choice(HOSTS)} "
        f"{rnd.choice(APPS)}[{rnd.randint(100, 9999)}]: #{i} {words}\n"
    ).encode()


def _run(args: list[str], *, stdin: bytes | None = None, quiet: bool = False) -> int:
    print(f"\n$ auditd-py {' '.join(args)}")
    p = subprocess.run(  # noqa: S603 - our own CLI with arguments we built
        [*CLI, *args],
        input=stdin,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if p.returncode:
        print(f"(exit {p.returncode})")
    return p.returncode


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _count_sealed(archive: Path) -> int:
    n = 0
    for seg in sorted((archive / "segments").glob("seg-*.jsonl")):
        with seg.open("rb") as fh:
            n += sum(1 for _ in fh)
    return n


def _feed(log: Path, archive: Path, port: int, seconds: float) -> None:
    """Write a growing log and send syslog datagrams for ``seconds``, with a progress bar."""
    written = [0]
    stop = threading.Event()

    def writer() -> None:
        rnd = random.Random(7)  # noqa: S311 - demo data, not security
        with log.open("ab") as fh:
            while not stop.is_set():
                fh.write(b"".join(_line(rnd, written[0] + k) for k in range(50)))
                fh.flush()
                written[0] += 50
                time.sleep(0.02)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + seconds
    sent = 0
    try:
        from rich.progress import Progress  # noqa: PLC0415 - only the demo shows a bar

        with Progress(transient=False) as bar:
            task = bar.add_task("sealing", total=None)
            while time.monotonic() < end:
                udp.sendto(
                    b"<13>1 - qa-web-1 demo - - - syslog line %d" % sent, ("127.0.0.1", port)
                )
                sent += 1
                n = _count_sealed(archive)
                bar.update(
                    task,
                    completed=n,
                    description=f"sealed {n:,} records "
                    f"({written[0]:,} log lines written, {sent} syslog messages sent)",
                )
                time.sleep(0.25)
    finally:
        stop.set()
        t.join()
        udp.close()


def _daemon(root: Path, archive: Path, seconds: float) -> int:
    logs = root / "daemon" / "logs"
    logs.mkdir(parents=True)
    port = _free_port()
    cfg = Path("config/dev.yaml")
    if not cfg.exists():  # installed without the repo: the embedded default
        cfg = root / "dev.yaml"
        cfg.write_text(DEV_CONFIG)
    env = {
        **os.environ,
        "AUDITD_ARCHIVE": str(archive),
        "AUDITD_LOGS": str(logs),
        "AUDITD_SYSLOG_PORT": str(port),
    }
    print(f"\n$ auditd-py run --config {cfg}   # logs in {logs}, syslog on 127.0.0.1:{port}")
    err = (root / "daemon.stderr").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "run", "--config", str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=err
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # ready once the syslog port answers
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            print((root / "daemon.stderr").read_text()[-2000:])
            return 1
        time.sleep(0.1)

    _feed(logs / "app.log", archive, port, seconds)
    time.sleep(1.0)  # let the tailer reach the end of the file
    print("\nSIGTERM: the daemon stops reading, seals what it has and writes a checkpoint")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    err.close()
    print(f"daemon exited with {code}")
    return code


def main(out: str = "demo-out", seconds: str = "5") -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    root = Path(out)
    release_tree(root)  # the last run's daemon made its segments immutable
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    archive = root / "daemon" / "archive"
    vk, pk = root / "keys/verify.key", root / "keys/public.key"

    print("== 1. create an archive and its keys")
    if _run(
        ["keygen", "--archive", str(archive), "--verify-key", str(vk), "--public-key", str(pk)]
    ):
        return 1
    print("\n== 2. run the daemon on config/dev.yaml: a growing log and a syslog port")
    if _daemon(root, archive, float(seconds)):
        print("demo: the daemon failed", file=sys.stderr)
        return 1
    print("\n== 3. a CI job seals its test output")
    steps = [
        _run(
            ["seal", "--archive", str(archive), "--source", "pytest"],
            stdin=b"collected 3 items\ntest_a PASSED\ntest_b PASSED\ntest_c FAILED\n",
        )
    ]
    print("\n== 4. verify: with the secret key, then as an auditor with the public key")
    steps.append(_run(["verify", str(archive), "--key", str(vk), "--require-sealed"]))
    steps.append(_run(["verify", str(archive), "--public-key", str(pk), "--require-sealed"]))
    steps.append(_run(["show", str(archive), "--source", "pytest"]))
    print("\n(the daemon's own log is sealed in the same chain:)")
    steps.append(_run(["show", str(archive), "--meta", "--grep", "daemon|source|config"]))
    if any(steps):
        print("demo: a step failed unexpectedly", file=sys.stderr)
        return 1

    print("\n== 5. tamper with a copy: turn the FAILED test into PASSED")
    bad = root / "tampered"
    shutil.copytree(archive, bad)
    seg = sorted((bad / "segments").iterdir())[-1]
    seg.write_bytes(seg.read_bytes().replace(b"test_c FAILED", b"test_c PASSED"))
    print(f"(edited {seg.relative_to(root)})")
    k = _run(["verify", str(bad), "--key", str(vk)])
    p = _run(["verify", str(bad), "--public-key", str(pk)])
    if k != 1 or p != 1:
        print("demo: the tampering was NOT detected", file=sys.stderr)
        return 1
    print("\n== done: the tamper was caught by both verifiers (exit 1); the original verifies")
    print(f"   files are in {root}/ — try: jq -c . {archive}/segments/*.jsonl | less")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
