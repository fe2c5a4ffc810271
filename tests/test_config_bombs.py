"""Configuration input that cannot be weaponised (issue 14, item 6).

A billion laughs, a recursive alias, 5,000-deep nesting and a ``!!python/`` tag
each give one line and exit 2 at once; ordinary aliases still work. On SIGHUP
the daemon parses off its main loop: a bomb is rejected, a file that cannot be
read (a FIFO nobody writes) is given up after the time limit, and SIGTERM during
such a reload stops the daemon at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from auditd_py.daemon.reloader import PARSE_TIMEOUT
from tests.support import configs
from tests.support.archive import Arc
from tests.support.cli import one_line_error, run_cli
from tests.support.daemon import Daemon, show, wait_for


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 "lol"']
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]" for k in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


BOMBS = {
    "billion-laughs": (billion_laughs(), "more than 100000 values once aliases are expanded"),
    "recursive-alias": ("a: &a [1, *a]\n", "recursive"),
    "deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
    "deep-mapping": ("".join("  " * i + f"k{i}:\n" for i in range(200)), "nested deeper"),
    "python-tag": ("archive: !!python/object/apply:os.system ['true']\n", "python/object"),
    "python-map": ("archive: !!python/object:os.PathLike {path: x}\n", "is not accepted"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_config_bomb_is_one_line(tmp_path: Path, name: str) -> None:
    text, needle = BOMBS[name]
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(text)
    one_line_error(run_cli("config", "check", cfg), 2, needle)


def test_a_config_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    cfg = tmp_path / "big.yaml"
    cfg.write_text("# " + "x" * (1 << 20) + "\n")
    one_line_error(run_cli("config", "check", cfg), 2, "longer than 1048576 bytes")


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    arc = tmp_path / "arc"
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        f"archive: {{path: {arc}}}\n"
        "sources:\n"
        f"  - {{name: a, type: file, paths: [{tmp_path}/a/*.log], poll_interval: &p 200ms}}\n"
        f"  - {{name: b, type: file, paths: [{tmp_path}/b/*.log], poll_interval: *p}}\n"
    )
    r = run_cli("config", "check", cfg)
    assert r.code == 0, str(r)
    assert r.out.count(b"poll_interval: 0.2s") == 2, r.out


def _rejections(arc: Arc) -> list[dict[str, Any]]:
    out = []
    for r in show(arc, "--meta"):
        if r["event"] == "config.rejected":
            attrs = r["attrs"]
            assert isinstance(attrs, dict)
            out.append(attrs)
    return out


def _release(fifo: Path) -> None:
    """Let a reader blocked opening ``fifo`` go on (it reads an empty file)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader (ENXIO): nothing to release
        return
    os.close(fd)


@pytest.mark.integration
def test_reload_of_a_bomb_or_a_fifo_leaves_the_daemon_running(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = configs.write(
        tmp_path / "d.yaml", configs.daemon(arc, sources=[configs.file_source(logs)])
    )
    fifo = tmp_path / "d.fifo"
    os.mkfifo(fifo)
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        good = cfg.read_text()
        cfg.write_text(good + billion_laughs())
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(_rejections(arc)) == 1, 10)
        assert "aliases are expanded" in str(_rejections(arc)[0]["error"])

        cfg.unlink()
        cfg.symlink_to(fifo)  # read by open(): it waits for a writer that never comes
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(_rejections(arc)) == 2, PARSE_TIMEOUT + 10)
        assert f"within {PARSE_TIMEOUT:g}s" in str(_rejections(arc)[1]["error"])
        _release(fifo)
        (logs / "app.log").write_bytes(b"still sealing\n")
        assert wait_for(lambda: any(r["message"] == "still sealing" for r in show(arc)))

        since = len(d.notify.messages)
        d.proc.send_signal(signal.SIGHUP)  # stuck again, and now SIGTERM: it stops at once
        assert d.notify.wait_for("RELOADING=1", 5, since)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=PARSE_TIMEOUT / 2) == 0
    finally:
        _release(fifo)
        if d.proc.poll() is None:
            d.proc.kill()
        d.stop()
