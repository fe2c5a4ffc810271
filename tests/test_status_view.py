"""``auditd-py status`` for people: a ``systemctl status``-like header, colour on a
terminal only, and ``--watch`` until Ctrl-C, against a real daemon."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from auditd_py.daemon.status import Snapshot
from auditd_py.daemon.statusview import CLEAR, GREEN, RED, RESET, render, watch
from auditd_py.errors import AuditdError
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, free_port
from tests.support.terminal import on_terminal


@pytest.mark.integration
def test_status_reads_like_systemctl_and_is_coloured_on_a_terminal_only(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    doc = configs.daemon(
        arc, metrics={"listen": f"127.0.0.1:{port}"}, sources=[configs.file_source(logs)]
    )
    cfg = configs.write(tmp_path / "d.yaml", doc)
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        url = f"http://127.0.0.1:{port}"
        code, shown = on_terminal("status", "--url", url)
        assert code == 0
        head = shown.splitlines()[0]
        assert head.startswith(f"{GREEN}●{RESET} auditd-py {GREEN}healthy{RESET} (pid ".encode())
        assert f"(file): {GREEN}ok{RESET}".encode() in shown
        code, plain = on_terminal("status", "--url", url, env={"NO_COLOR": "1"})
        assert code == 0 and b"\x1b[" not in plain
        assert plain.startswith(f"● auditd-py healthy (pid {d.proc.pid}, up ".encode())
        piped = subprocess.run(
            [*CLI, "status", "--url", url], capture_output=True, check=False, timeout=30
        )
        assert piped.returncode == 0 and b"\x1b[" not in piped.stdout
        assert len(piped.stdout.splitlines()) <= 8  # short
        assert b"source app (file): ok" in piped.stdout

        # --watch: frames until Ctrl-C, each clearing the terminal first
        code, frames = on_terminal(
            "status", "--url", url, "--watch", "0.2",
            interrupt_when=lambda out: out.count(CLEAR.encode()) >= 3,
        )  # fmt: skip
        assert code == 0
        assert frames.count(CLEAR.encode()) >= 3 and frames.count(b"healthy") >= 3
        r = subprocess.run(
            [*CLI, "status", "--url", url, "--watch", "0"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert r.returncode == 2 and b"--watch must be a positive number" in r.stderr
    finally:
        code = d.stop()
    assert code == 0


def test_watch_shows_an_unreachable_daemon_and_goes_on() -> None:
    calls = []

    def fetch() -> tuple[int, dict[str, object]]:
        calls.append(1)
        if len(calls) == 2:
            raise AuditdError("cannot reach the daemon at http://127.0.0.1:1: refused")
        return 503, {"status": "unhealthy", "reasons": ["source app: gone"], "pid": 7}

    out = io.StringIO()
    slept: list[float] = []
    watch(
        fetch, "http://x", out, interval=1.5, color=True, clear=False, sleep=slept.append,
        frames=3,
    )  # fmt: skip
    text = out.getvalue()
    assert slept == [1.5, 1.5] and len(calls) == 3
    assert text.count(f"{RED}●{RESET} auditd-py") == 2
    assert f"{RED}●{RESET} cannot reach the daemon" in text
    assert f"{RED}  problem:{RESET} source app: gone" in text


def test_render_without_colour_has_no_escapes() -> None:
    snap = Snapshot.from_doc({"status": "ok", "reasons": [], "pid": 9, "uptime_seconds": 3725})
    lines = render(snap, "http://x", True, False)
    assert lines[0] == "● auditd-py healthy (pid 9, up 1h 2min, version -) at http://x"
    assert not any("\x1b" in line for line in lines)
