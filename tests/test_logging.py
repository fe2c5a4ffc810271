"""The daemon's own log on stderr: JSON for machines, lines for people, priorities for journald."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from auditd_py import events, metalog
from auditd_py.metalog import MetaLog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def emit(**configure: object) -> None:
    log = MetaLog()
    log.log_only(events.SOURCE_ADDED, "source app (file) started", source="app")
    log.log_only(events.FILE_TRUNCATED, "app.log truncated", path="/var/log/app.log")
    log.log_only(events.ERROR, "bad \x1b[2Jthing\x07 happened")


def test_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    metalog.configure(stream=out)
    emit()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["event"], d["level"]) for d in docs] == [
        ("source.added", "info"),
        ("file.truncated", "warning"),
        ("daemon.error", "error"),
    ]
    assert docs[0]["source"] == "app" and docs[0]["timestamp"].endswith("Z")
    assert docs[2]["message"] == "bad \x1b[2Jthing\x07 happened"  # JSON escapes it itself


def test_console_lines_escape_control_characters() -> None:
    out = io.StringIO()
    metalog.configure(stream=out, fmt="console")
    emit()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert (
        lines[0].split(" ", 1)[1]
        == "info    source.added: source app (file) started  [source='app']"
    )
    assert "warning file.truncated: app.log truncated" in lines[1]
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "bad \\x1b[2Jthing\\x07 happened" in lines[2]


def read_lines(fd: int, n: int, timeout: float = 5.0) -> str:
    """What a terminal shows once ``n`` lines have arrived (the tty layer passes
    written bytes on asynchronously: one read may return only the first ones)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < n:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        buf += os.read(fd, 65536)
    return buf.decode()


def test_auto_picks_console_on_a_terminal_with_colour() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            metalog.configure(stream=tty)
            emit()
            tty.flush()
        text = read_lines(leader, 3)
    finally:
        os.close(leader)
        os.close(follower)
    assert "source.added: source app (file) started" in text
    assert "\x1b[31;1m" in text  # the error line in red; the message's own escape is not raw
    assert "\x1b[2J" not in text


def test_level_filters_what_is_written() -> None:
    out = io.StringIO()
    metalog.configure(stream=out, level=metalog.LOG_LEVELS["warning"])
    emit()
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == [
        "file.truncated",
        "daemon.error",
    ]


def test_journal_stream_gets_priority_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On systemd's journal stream each line starts with <N> (sd-daemon), so -p works."""
    path = tmp_path / "stream"
    with path.open("w") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        metalog.configure(stream=fh)
        emit()
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert json.loads(lines[0][3:])["event"] == "source.added"
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream: no prefixes
    out = tmp_path / "plain"
    with out.open("w") as fh:
        metalog.configure(stream=fh)
        emit()
    assert out.read_text().startswith("{")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        metalog.configure(stream=io.StringIO(), fmt="xml")
