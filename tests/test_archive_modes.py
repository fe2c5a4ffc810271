"""Modes set by auditd-py itself, whatever the umask (issue 14, item 7).

The archive's directories are 0750 and its files 0640 when created from a
shell (umask 0022, or a stricter 0077); with ``archive.group`` the daemon gives
the directories that group (setgid, so new files inherit it). A user outside
the group who runs ``show`` or ``verify`` is told so in one line; one in the
group reads the archive.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import configs
from tests.support.archive import Arc
from tests.support.cli import CLI_BIN, keygen
from tests.support.daemon import Daemon, show, wait_for

NOGROUP = grp.getgrnam("nogroup").gr_gid


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory under /tmp that any user may traverse (pytest's are 0700)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        Path(d).chmod(0o755)
        yield Path(d)


def _modes(root: Path) -> dict[str, int]:
    """Mode of the archive root (``.``) and of what it holds, but the sealing state."""
    out = {".": stat.S_IMODE(root.lstat().st_mode)}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if not rel.startswith("."):
            out[rel] = stat.S_IMODE(p.lstat().st_mode)
    return out


def _as_nobody(gid: int, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real CLI as user ``nobody`` with only group ``gid``."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", f"--regid={gid}", "--clear-groups", str(CLI_BIN)]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_cli_archive_modes_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        arc = keygen(tmp_path / "a")
        arc.seal(*[b"secret %d" % i for i in range(5)])
    finally:
        os.umask(old)
    modes = _modes(arc.root)
    dirs = {k: v for k, v in modes.items() if (arc.root / k).is_dir()}
    files = {k: v for k, v in modes.items() if k not in dirs}
    assert dirs == dict.fromkeys([".", "segments", "checkpoints", "quarantine"], 0o750)
    assert files and set(files.values()) == {0o640}, files


@pytest.mark.integration
def test_daemon_gives_the_archive_its_group_and_others_are_told(open_tmp: Path) -> None:
    arc = Arc(open_tmp / "a", random=None)
    logs = open_tmp / "logs"
    logs.mkdir()
    doc = configs.daemon(arc, sources=[configs.file_source(logs)], segments={"immutable": "off"})
    doc["archive"]["group"] = "nogroup"
    cfg = configs.write(open_tmp / "d.yaml", doc)
    old = os.umask(0o022)
    try:
        d = Daemon(open_tmp, cfg)
    finally:
        os.umask(old)
    try:
        d.ready()
        (logs / "app.log").write_bytes(b"a secret line\n")
        assert wait_for(lambda: any(r["message"] == "a secret line" for r in show(arc)))
    finally:
        assert d.stop() == 0
    root = arc.layout.root
    for sub in (root, arc.layout.segments, arc.layout.checkpoints):
        st = sub.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2750, NOGROUP), sub
    seg = sorted(arc.layout.segments.iterdir())[-1]  # written by the daemon
    assert (stat.S_IMODE(seg.stat().st_mode), seg.stat().st_gid) == (0o640, NOGROUP)

    outsider = NOGROUP - 1  # any group but the archive's
    for args in (("show", root), ("verify", root, "--public-key", arc.pk_path)):
        r = _as_nobody(outsider, *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "permission denied" in r.stderr, r.stderr
    r = _as_nobody(NOGROUP, "show", root)
    assert r.returncode == 0, r.stderr
    assert "a secret line" in r.stdout
