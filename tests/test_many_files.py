"""Thousands of files under one glob (issue 14, item 4).

10,000 one-line files are all read and sealed; the positions of all of them are
stored (the sealing state spills them to a file of their own instead of
failing "sealing state too large"), so a restart reads none twice; the daemon
starts with the soft descriptor limit raised to the hard one. A symlinked
directory is not followed unless ``follow_symlinks``, and then never to
outside the glob's root.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import pytest

from auditd_py.errors import StateError
from auditd_py.record import Position
from auditd_py.sources.file import discovery
from auditd_py.store.state import StateFile
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon, free_port, get_health, wait_for

N = 10_000
BUDGET = 200


def _sealed(port: int, name: str = "app") -> int:
    srcs = {s["name"]: s for s in get_health(port)[1]["sources"]}
    return int(srcs[name]["records_sealed"])


def _limit(pid: int) -> int:
    for row in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if row.startswith("Max open files"):
            return int(row.split()[3])
    raise AssertionError("no limit")


@pytest.mark.integration
def test_ten_thousand_files_are_read_and_resumed(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(N):
        (logs / f"f{i:05d}.log").write_bytes(b"line of file %d\n" % i)
    port = free_port()
    doc = configs.daemon(
        arc,
        sources=[configs.file_source(logs, poll_interval="200ms", max_open_files=BUDGET)],
        metrics={"listen": f"127.0.0.1:{port}"},
        segments={"immutable": "off"},
    )
    cfg = configs.write(tmp_path / "d.yaml", doc)
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        assert _limit(d.proc.pid) == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        t0 = time.monotonic()
        fds = 0

        def all_sealed() -> bool:
            nonlocal fds
            fds = max(fds, len(os.listdir(f"/proc/{d.proc.pid}/fd")))
            return _sealed(port) >= N

        assert wait_for(all_sealed, 120), _sealed(port)
        print(f"{N} files sealed in {time.monotonic() - t0:.1f}s, at most {fds} descriptors")
        assert fds < BUDGET + 60  # the budget, and the daemon's own (archive, sockets)
        with (logs / "f00003.log").open("ab") as fh:  # closed as idle: reopened as it grows
            fh.write(b"a second line\n")
        assert wait_for(lambda: _sealed(port) == N + 1, 30), _sealed(port)
    finally:
        code = d.stop()  # the final checkpoint saves the state with N positions
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    assert any(n.startswith("positions-") for n in os.listdir(arc.layout.state))

    (logs / "f00007.log").write_bytes(b"line of file 7\nand one more\n")
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        assert wait_for(lambda: _sealed(port) >= 1, 60)
        assert _sealed(port) == 1  # only the new line: none of the 10,000 again
    finally:
        assert d.stop() == 0


def test_a_symlinked_directory_is_not_followed_by_default(tmp_path: Path) -> None:
    logs, secret = tmp_path / "logs", tmp_path / "secret"
    (logs / "real").mkdir(parents=True)
    secret.mkdir()
    (logs / "real" / "a.log").write_bytes(b"a\n")
    (secret / "s.log").write_bytes(b"secret\n")
    (logs / "d").symlink_to(secret)
    (logs / "inner").symlink_to(logs / "real")
    pattern = [f"{logs}/*/*.log"]
    assert discovery.list_paths(pattern, []) == [f"{logs}/real/a.log"]
    # followed when asked, but never out of the glob's root
    assert discovery.list_paths(pattern, [], follow_symlinks=True) == [
        f"{logs}/inner/a.log",
        f"{logs}/real/a.log",
    ]


def test_positions_too_many_for_a_slot_spill_to_a_file(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    sf, saved = StateFile.open(arc.layout.state)
    many = {
        f"app:1:{i}": Position({"k": f"app:1:{i}", "off": i, "fp": "ab" * 8, "fpn": 16}, b"x")
        for i in range(5000)
    }
    try:
        sf.save(replace(saved, writer=replace(saved.writer, positions=many)))
    finally:
        sf.release()
    spilled = [n for n in os.listdir(arc.layout.state) if n.startswith("positions-")]
    assert len(spilled) == 1
    sf, back = StateFile.open(arc.layout.state)
    try:
        assert back.writer.positions == many
        sf.save(replace(back, writer=replace(back.writer, positions={})))  # fits a slot again
    finally:
        sf.release()
    assert not [n for n in os.listdir(arc.layout.state) if n.startswith("positions-")]

    sf, saved = StateFile.open(arc.layout.state)
    try:
        sf.save(replace(saved, writer=replace(saved.writer, positions=many)))
    finally:
        sf.release()
    name = next(n for n in os.listdir(arc.layout.state) if n.startswith("positions-"))
    (arc.layout.state / name).write_bytes(b"{}")  # tampered with: refused, not trusted
    with pytest.raises(StateError, match="does not match"):
        StateFile.open(arc.layout.state)
