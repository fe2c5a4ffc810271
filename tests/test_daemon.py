"""The daemon end to end: files, syslog and journald at once, real peers.

The daemon runs as a subprocess (``auditd-py run``), reports readiness over a
real ``NOTIFY_SOCKET``, receives lines from ``logger``, from files and from a
journal written by ``systemd-journal-remote``, stops on SIGTERM with a final
checkpoint, and everything read is in the archive exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, free_port, show, verify_both, wait_for
from tests.support.journal import Remote, entry

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Arc, Path, int, Path]]:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    jdir = tmp_path / "journal"
    jdir.mkdir()
    doc = configs.daemon(
        arc,
        epoch_interval="1s",
        sources=[
            configs.file_source(logs, "*.log*"),
            configs.syslog_source(
                f"udp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port}", f"unix://{tmp_path}/log.sock"
            ),
            configs.journald_source(jdir),
        ],
    )
    cfg = configs.write(tmp_path / "daemon.yaml", doc)
    yield arc, logs, port, cfg


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
