"""Disk pressure for real: the archive on a small tmpfs that the tests fill up.

Each test mounts its own size-limited tmpfs (the tests run as root), puts the
archive there, starts the daemon, fills the file system with a ballast file
and checks the ladder: events, the action, nothing sealed corrupted, nothing
read lost, and ingestion resuming once the ballast is gone.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from auditd_py.config import DiskSettings, Space
from auditd_py.daemon.disk import EXIT_HALTED, EXIT_UNWRITTEN, FULL_MARGIN, Level, classify
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import (
    Daemon,
    app_messages,
    assert_suffix_exactly_once,
    show,
    verify_both,
    wait_for,
)
from tests.support.syslog import syslog_line

MiB = 1 << 20


def test_levels() -> None:
    cfg = DiskSettings(space_left=Space(percent=10), admin_space_left=Space(bytes=5 * MiB))
    total = 100 * MiB
    assert classify(50 * MiB, total, cfg, writes_refused=False).level == Level.OK
    assert classify(9 * MiB, total, cfg, writes_refused=False).level == Level.LOW
    assert classify(4 * MiB, total, cfg, writes_refused=False).level == Level.ADMIN
    assert classify(FULL_MARGIN - 1, total, cfg, writes_refused=False).level == Level.FULL
    assert classify(50 * MiB, total, cfg, writes_refused=True).level == Level.FULL
    r = classify(50 * MiB, total, cfg, writes_refused=False)
    assert (r.space_left, r.admin_space_left) == (10 * MiB, 5 * MiB)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free."""
    ballast = mnt / "ballast"
    size = (ballast.stat().st_size if ballast.exists() else 0) + free(mnt) - leave
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 0)
        os.posix_fallocate(fd, 0, max(size, 4096))
    finally:
        os.close(fd)
    return ballast


def config(arc: Arc, logs: Path, path: Path, disk: Mapping[str, object]) -> Path:
    doc = configs.daemon(
        arc,
        segments={"max_bytes": "256KiB", "compress": "none"},
        disk=disk,
        sources=[configs.file_source(logs)],
    )
    return configs.write(path, doc)


def start(mnt: Path, tmp: Path, disk: Mapping[str, object]) -> tuple[Arc, Path, Daemon]:
    """An archive on the small file system, a log directory beside it, a daemon running."""
    arc = Arc(mnt / "a", random=None)
    logs = tmp / "logs"
    logs.mkdir()
    return arc, logs, Daemon(tmp, config(arc, logs, tmp / "d.yaml", disk))


def write(logs: Path, lo: int, hi: int) -> None:
    with (logs / "app.log").open("ab") as fh:
        for k in range(lo, hi, 500):
            fh.write(b"".join(syslog_line(i) + b"\n" for i in range(k, min(k + 500, hi))))
            fh.flush()


def sealed_up_to(arc: Arc, n: int) -> bool:
    got = app_messages(arc)
    return bool(got) and got[-1] == syslog_line(n - 1).decode()


def _action(rec: dict[str, object]) -> object:
    attrs = rec.get("attrs")
    return attrs.get("action") if isinstance(attrs, dict) else None


def events(tmp: Path) -> str:
    return (tmp / "daemon.stderr").read_text()


@pytest.mark.integration
def test_full_disk_holds_sealed_records_and_resumes(small_fs: Path, tmp_path: Path) -> None:
    """A write refused with ENOSPC mid-commit: held in memory, written when space returns."""
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "256KiB",
            "admin_space_left": "128KiB",
            "disk_full_action": "suspend",
            "check_interval": "10s",
        },
    )
    try:
        d.ready()
        write(logs, 0, 2000)
        assert wait_for(lambda: sealed_up_to(arc, 2000), 30)
        ballast = fill(small_fs, 64 << 10)  # 64 KiB left: the next commits do not fit
        write(logs, 2000, 12000)  # ~2 MB of records
        assert wait_for(lambda: '"disk.full"' in events(tmp_path), 30), events(tmp_path)[-3000:]
        assert d.proc.poll() is None, "the daemon must not die of a full disk"
        time.sleep(1.0)
        assert free(small_fs) < 64 << 10
        ballast.unlink()
        assert wait_for(lambda: sealed_up_to(arc, 12000), 60), events(tmp_path)[-3000:]
    finally:
        code = d.stop()
    assert code == 0, events(tmp_path)[-3000:]
    assert app_messages(arc) == [syslog_line(i).decode() for i in range(12000)]
    meta = [r["event"] for r in show(arc, "--meta")]
    assert "disk.full" in meta and "disk.ok" in meta
    assert not any(p.name.endswith(".tail") for p in arc.layout.quarantine.iterdir())
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_admin_space_left_suspends_reading_and_resumes(small_fs: Path, tmp_path: Path) -> None:
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "6MiB",
            "admin_space_left": "4MiB",
            "admin_space_left_action": "suspend",
            "check_interval": "200ms",
        },
    )
    try:
        d.ready()
        write(logs, 0, 1000)
        assert wait_for(lambda: sealed_up_to(arc, 1000), 30)
        ballast = fill(small_fs, 3 * MiB)
        assert wait_for(lambda: "suspended reading" in events(tmp_path), 20)
        write(logs, 1000, 3000)
        time.sleep(1.5)
        assert not sealed_up_to(arc, 3000), "reading went on while suspended"
        ballast.unlink()
        assert wait_for(lambda: sealed_up_to(arc, 3000), 30), events(tmp_path)[-3000:]
    finally:
        code = d.stop()
    assert code == 0
    assert app_messages(arc) == [syslog_line(i).decode() for i in range(3000)]
    meta = [r["event"] for r in show(arc, "--meta")]
    assert "disk.admin_space_left" in meta and "disk.action" in meta and "disk.ok" in meta
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_rotate_action_deletes_oldest_segments_through_retention(
    small_fs: Path, tmp_path: Path
) -> None:
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "14MiB",
            "admin_space_left": "13MiB",
            "admin_space_left_action": "rotate",
            "check_interval": "200ms",
        },
    )
    n = 24000
    try:
        d.ready()
        # ~5.2 MB, about twenty closed segments: freeing 2 MiB must leave lines behind
        # even when the daemon's own writes (checkpoints, meta records) eat into the margin.
        write(logs, 0, n)
        assert wait_for(lambda: sealed_up_to(arc, n), 30)
        fill(small_fs, 12 * MiB)  # below admin_space_left: free 2 MiB more by retention
        assert wait_for(lambda: '"disk_pressure"' in events(tmp_path), 20), events(tmp_path)[-3000:]
        assert wait_for(lambda: free(small_fs) >= 14 * MiB, 20)
    finally:
        code = d.stop()
    assert code == 0
    meta = show(arc, "--meta")
    deleted = [r for r in meta if r["event"] == "retention.deleted"]
    assert deleted and {r["attrs"]["policy"] for r in deleted} == {"disk_pressure"}  # type: ignore[index]
    assert_suffix_exactly_once(app_messages(arc), n)
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_rotate_on_a_completely_full_disk_uses_the_reserve(small_fs: Path, tmp_path: Path) -> None:
    """No byte left: the deletion record still fits, thanks to the reserve file."""
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "2MiB",
            "admin_space_left": "1MiB",
            "admin_space_left_action": "rotate",
            "disk_full_action": "rotate",
            "check_interval": "200ms",
        },
    )
    try:
        d.ready()
        assert (arc.layout.root / ".reserve").exists()
        write(logs, 0, 12000)
        assert wait_for(lambda: sealed_up_to(arc, 12000), 30)
        fill(small_fs, 0)
        write(logs, 12000, 14000)
        assert wait_for(lambda: sealed_up_to(arc, 14000), 40), events(tmp_path)[-3000:]
    finally:
        code = d.stop()
    assert code == 0, events(tmp_path)[-3000:]
    assert '"disk.full"' in events(tmp_path)
    meta = show(arc, "--meta")
    assert any(r["event"] == "retention.deleted" for r in meta)
    assert_suffix_exactly_once(app_messages(arc), 14000)
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_halt_action_exits_non_zero(small_fs: Path, tmp_path: Path) -> None:
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "8MiB",
            "admin_space_left": "6MiB",
            "admin_space_left_action": "halt",
            "check_interval": "200ms",
        },
    )
    d.ready()
    write(logs, 0, 500)
    assert wait_for(lambda: sealed_up_to(arc, 500), 30)
    fill(small_fs, 5 * MiB)
    code = d.proc.wait(timeout=30)
    d.stop()  # closes the notify socket; the process is gone
    assert code == EXIT_HALTED, events(tmp_path)[-2000:]
    assert "halting" in events(tmp_path)
    meta = [r["event"] for r in show(arc, "--meta")]
    assert "disk.admin_space_left" in meta
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_exec_action_runs_the_command_once_per_crossing(small_fs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    arc, _logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "8MiB",
            "admin_space_left": "6MiB",
            "admin_space_left_action": "exec",
            "check_interval": "200ms",
            "exec": [
                "/bin/sh",
                "-c",
                f"echo $AUDITD_PY_DISK_LEVEL $AUDITD_PY_DISK_FREE >> {marker}",
            ],
        },
    )
    try:
        d.ready()
        ballast = fill(small_fs, 5 * MiB)
        assert wait_for(marker.exists, 20)
        time.sleep(1.0)  # more checks at the same level: no second run
        ballast.unlink()
        assert wait_for(lambda: '"disk.ok"' in events(tmp_path), 20)
    finally:
        code = d.stop()
    assert code == 0
    lines = marker.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("admin "), lines
    meta = show(arc, "--meta")
    runs = [r for r in meta if r["event"] == "disk.action" and _action(r) == "exec"]
    assert len(runs) == 1
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_levels_crossed_at_once_each_run_their_action_in_order(
    small_fs: Path, tmp_path: Path
) -> None:
    """A disk that fills faster than check_interval (issue 17, 2): the commit after it
    reads the disk, and space_left, admin_space_left (its exec action) and full are each
    acted on and sealed, in that order, long before the timer would have looked."""
    marker = tmp_path / "marker"
    arc, logs, d = start(
        small_fs,
        tmp_path,
        {
            "space_left": "8MiB",
            "admin_space_left": "6MiB",
            "admin_space_left_action": "exec",
            "disk_full_action": "suspend",
            "check_interval": "1h",
            "exec": ["/bin/sh", "-c", f"echo $AUDITD_PY_DISK_LEVEL >> {marker}"],
        },
    )
    try:
        d.ready()
        write(logs, 0, 500)
        assert wait_for(lambda: sealed_up_to(arc, 500), 30)
        ballast = fill(small_fs, FULL_MARGIN // 2)  # below all three levels at once
        write(logs, 500, 1000)  # the next group commit reads the disk
        assert wait_for(lambda: '"disk.full"' in events(tmp_path), 20), events(tmp_path)[-3000:]
        assert wait_for(marker.exists, 10)
        ballast.unlink()  # suspended: the disk is read every second, not every hour
        assert wait_for(lambda: sealed_up_to(arc, 1000), 30), events(tmp_path)[-3000:]
    finally:
        code = d.stop()
    assert code == 0, events(tmp_path)[-3000:]
    assert marker.read_text().split() == ["admin"]
    meta = [r for r in show(arc, "--meta") if str(r["event"]).startswith("disk.")]
    levels = [r["event"] for r in meta if r["event"] != "disk.action"]
    assert levels[:3] == ["disk.space_left", "disk.admin_space_left", "disk.full"], levels
    acts = [_action(r) for r in meta if r["event"] == "disk.action" and _action(r)]
    assert acts[:2] == ["exec", "suspend"], meta  # (the command's exit may come between)
    assert app_messages(arc) == [syslog_line(i).decode() for i in range(1000)]
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_sigterm_while_the_disk_is_full_loses_nothing(small_fs: Path, tmp_path: Path) -> None:
    """SIGTERM while writes are refused (issue 17, 4): exit status 4 (EXIT_UNWRITTEN, as the
    README says), and the next start reads the unwritten lines again: none lost or doubled."""
    disk = {
        "space_left": "256KiB",
        "admin_space_left": "128KiB",
        "admin_space_left_action": "exec",
        "disk_full_action": "exec",
        "exec": ["/bin/true"],  # keep reading: the writer must hold records in memory
        "check_interval": "200ms",
    }
    arc, logs, d = start(small_fs, tmp_path, disk)
    cfg = tmp_path / "d.yaml"
    d.ready()
    write(logs, 0, 2000)
    assert wait_for(lambda: sealed_up_to(arc, 2000), 30)
    ballast = fill(small_fs, 64 << 10)
    write(logs, 2000, 12000)  # ~2 MB of records: writes are refused
    assert wait_for(lambda: free(small_fs) < 4096, 30), events(tmp_path)[-3000:]
    time.sleep(0.5)
    code = d.stop()
    assert code == EXIT_UNWRITTEN, events(tmp_path)[-3000:]
    assert "unwritten" in events(tmp_path)
    ballast.unlink()
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        assert wait_for(lambda: sealed_up_to(arc, 12000), 60), events(tmp_path)[-3000:]
    finally:
        code = d.stop()
    assert code == 0, events(tmp_path)[-3000:]
    assert app_messages(arc) == [syslog_line(i).decode() for i in range(12000)]
    verify_both(arc, "--require-sealed")
