"""The daemon end to end: files, syslog and journald at once, real peers.

The daemon runs as a subprocess (``auditd-py run``), reports readiness over a
real ``NOTIFY_SOCKET``, receives lines from ``logger``, from files and from a
journal written by ``systemd-journal-remote``, stops on SIGTERM with a final
checkpoint, and everything read is in the archive exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.test_journald_source import Remote, entry
from tests.util import Arc

CLI = [sys.executable, "-m", "auditd_py"]
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", port))  # the same number must be free for UDP too
    return port


class Notify:
    """A NOTIFY_SOCKET like systemd's, collecting what the daemon says.

    Read continuously, as systemd does: a unix datagram socket queues only
    ``net.unix.max_dgram_qlen`` (often 10) messages, after which the daemon's
    sd_notify() would block.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, what: str, timeout: float, since: int = 0) -> bool:
        """Whether a message containing ``what`` arrives (from index ``since`` on)."""
        deadline = time.monotonic() + timeout
        while True:
            if any(what in m for m in self.messages[since:]):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def during(self, seconds: float) -> list[str]:
        """The messages that arrive in the next ``seconds``."""
        start = len(self.messages)
        time.sleep(seconds)
        return self.messages[start:]

    def drain(self) -> None:
        time.sleep(0.2)  # what was sent before now has been read

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    def __init__(self, tmp: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.notify = Notify(tmp / f"notify-{time.monotonic_ns()}.sock")
        self.stderr = (tmp / "daemon.stderr").open("ab")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(env or {})}
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=env,
        )
        self.tmp = tmp

    def ready(self) -> None:
        ok = self.notify.wait_for("READY=1", 20)
        assert ok, (self.tmp / "daemon.stderr").read_text()[-2000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.notify.drain()
        self.notify.close()
        self.stderr.close()
        return code


def show(arc: Arc, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [*CLI, "show", str(arc.layout.root), "--json", *args], check=True, capture_output=True
    ).stdout
    return [orjson.loads(x) for x in out.splitlines()]


def verify_both(arc: Arc, *extra: str) -> None:
    for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
        r = subprocess.run(
            [*CLI, "verify", str(arc.layout.root), flag, str(key), *extra],
            capture_output=True,
            check=False,
        )
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Arc, Path, int, Path]]:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    jdir = tmp_path / "journal"
    jdir.mkdir()
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(
        f"""environment: test
archive:
  path: {arc.layout.root}
sealing:
  epoch_interval: 1s
  commit_interval: 20ms
sources:
  - name: app
    type: file
    paths: ["{logs}/*.log*"]
    poll_interval: 100ms
  - name: syslog
    type: syslog
    listen: ["udp://127.0.0.1:{port}", "tcp://127.0.0.1:{port}",
             "unix://{tmp_path}/log.sock"]
  - name: journal
    type: journald
    directory: {jdir}
"""
    )
    yield arc, logs, port, cfg


def wait_for(pred: object, timeout: float = 20.0) -> bool:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


def test_all_sources_sealed_exactly_once_and_clean_stop(
    setup: tuple[Arc, Path, int, Path], tmp_path: Path
) -> None:
    arc, logs, port, cfg = setup
    remote = Remote(tmp_path / "journal")
    remote.feed([entry(i, b"journal %d" % i) for i in range(50)])
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        (logs / "app.log").write_bytes(b"".join(b"file %d\n" % i for i in range(500)))
        for flags in (["-d"], ["-T"], ["-T", "--octet-count"], ["--rfc3164", "-d"]):
            subprocess.run(
                ["logger", "-n", "127.0.0.1", "-P", str(port), *flags, f"syslog {flags}"],
                check=True,
            )
        subprocess.run(["logger", "-u", str(tmp_path / "log.sock"), "syslog unix"], check=True)
        remote.feed([entry(i, b"journal %d" % i) for i in range(50, 80)])

        def complete() -> bool:
            recs = show(arc, "--all")
            by: dict[object, int] = {}
            for r in recs:
                by[r["source"]] = by.get(r["source"], 0) + 1
            return by.get("app") == 500 and by.get("syslog") == 5 and by.get("journal") == 80

        assert wait_for(complete), show(arc, "--all")[-5:]
        assert d.notify.wait_for("WATCHDOG=1", 5)
    finally:
        code = d.stop()
        remote.close()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    assert any("STOPPING=1" in m for m in d.notify.messages)
    recs = show(arc)
    assert [r["message"] for r in recs if r["source"] == "app"] == [f"file {i}" for i in range(500)]
    journal = [r["message"] for r in recs if r["source"] == "journal"]
    assert journal == [f"journal {i}" for i in range(80)]
    syslog = sorted(str(r["message"]) for r in recs if r["source"] == "syslog")
    assert len(syslog) == 5 and "syslog unix" in syslog
    meta = [r["event"] for r in show(arc, "--meta")]
    for ev in (
        "daemon.started",
        "config.loaded",
        "source.added",
        "daemon.ready",
        "daemon.stopping",
        "daemon.stopped",
    ):
        assert ev in meta
    verify_both(arc, "--require-sealed")  # SIGTERM ends with a checkpoint


def test_kill9_journal_and_files_exactly_once(
    setup: tuple[Arc, Path, int, Path], tmp_path: Path
) -> None:
    """SIGKILL while journal entries and file lines keep coming: nothing lost, nothing twice."""
    arc, logs, _, cfg = setup
    remote = Remote(tmp_path / "journal")
    n_journal = n_file = 0
    try:
        for _round in range(4):
            d = Daemon(tmp_path, cfg)
            d.ready()
            for _ in range(5):
                remote.feed([entry(n_journal + i, b"j %d" % (n_journal + i)) for i in range(200)])
                n_journal += 200
                with (logs / "app.log").open("ab") as fh:
                    fh.write(b"".join(b"f %d\n" % (n_file + i) for i in range(300)))
                n_file += 300
                time.sleep(0.1)
            d.stop(signal.SIGKILL)
    finally:
        remote.close()
    subprocess.run([*CLI, "run", "--config", str(cfg), "--once"], check=True, capture_output=True)
    recs = show(arc)
    files = [r["message"] for r in recs if r["source"] == "app"]
    journal = [r["message"] for r in recs if r["source"] == "journal"]
    assert files == [f"f {i}" for i in range(n_file)]
    assert journal == [f"j {i}" for i in range(n_journal)]
    verify_both(arc)


def test_start_fails_clearly_without_an_archive(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"archive:\n  path: {tmp_path}/nope\n")
    r = subprocess.run(
        [*CLI, "run", "--config", str(cfg), "--once"], capture_output=True, check=False
    )
    assert r.returncode == 2
    assert b"not an auditd-py archive" in r.stderr and b"Traceback" not in r.stderr


def test_two_daemons_on_one_archive_are_refused(
    setup: tuple[Arc, Path, int, Path], tmp_path: Path
) -> None:
    arc, _, _, cfg = setup
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        r = subprocess.run(
            [*CLI, "run", "--config", str(cfg), "--once"], capture_output=True, check=False
        )
        assert r.returncode == 2 and b"another process is sealing" in r.stderr
    finally:
        assert d.stop() == 0
    del arc


def test_sigterm_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    """A SIGTERM before the daemon's handlers exist (imports, config) still stops it cleanly."""
    arc = Arc(tmp_path, random=None)
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"archive: {{path: {arc.layout.root}}}\n")
    for delay in (0.1, 0.2, 0.35):
        p = subprocess.Popen(
            [*CLI, "run", "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, (delay, err.decode()[-2000:])
    verify_both(arc, "--require-sealed")
