"""A journal written by ``systemd-journal-remote`` from the Journal Export Format
generated here (binary fields in the length-prefixed encoding), as the journald
source and the daemon read it."""

from __future__ import annotations

import importlib
import os
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT = b"0123456789abcdef0123456789abcdef"
T0 = 1_764_000_000_000_000  # µs

try:
    importlib.import_module("systemd.journal")  # systemd-python (no type hints shipped)
    HAVE_SYSTEMD_PYTHON = True
except ImportError:
    HAVE_SYSTEMD_PYTHON = False

integration = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_SYSTEMD_PYTHON, reason="systemd-python is not installed"),
    pytest.mark.skipif(
        not os.access(JOURNAL_REMOTE, os.X_OK),
        reason="systemd-journal-remote is not installed (apt: systemd-journal-remote)",
    ),
]


# ---------------------------------------------------------------- export format


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def export(fields: Sequence[tuple[str, bytes]]) -> bytes:
    """One entry in the Journal Export Format (binary-safe encoding where needed)."""
    out = bytearray()
    for key, value in fields:
        if b"\n" not in value and _is_utf8(value):
            out += key.encode() + b"=" + value + b"\n"
        else:
            out += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return bytes(out) + b"\n"


def entry(
    i: int, message: bytes | None = None, extra: Sequence[tuple[str, bytes]] = ()
) -> list[tuple[str, bytes]]:
    """Entry number ``i``: time and monotonic clock grow with ``i``."""
    fields = [
        ("__REALTIME_TIMESTAMP", str(T0 + i * 1000).encode()),
        ("__MONOTONIC_TIMESTAMP", str(1_000_000 + i).encode()),
        ("_BOOT_ID", BOOT),
        ("_HOSTNAME", b"testhost"),
    ]
    if message is not None:
        fields.append(("MESSAGE", message))
    fields += extra
    return fields


class Remote:
    """systemd-journal-remote writing ``directory/name`` from our stdin."""

    def __init__(self, directory: Path, name: str = "remote.journal") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        self.proc = subprocess.Popen(
            [JOURNAL_REMOTE, "--split-mode=none", f"--output={self.path}", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def feed(self, entries: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(export(e) for e in entries))
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert self.proc.returncode == 0, err.decode(errors="replace")


def write_journal(
    directory: Path, entries: Sequence[Sequence[tuple[str, bytes]]], name: str = "remote.journal"
) -> Path:
    r = Remote(directory, name)
    r.feed(entries)
    r.close()
    return r.path


def wait_entries(directory: Path, n: int, timeout: float = 5.0) -> None:
    """Until a reader of its own sees ``n`` entries in ``directory``."""
    journal: Any = importlib.import_module("systemd.journal")
    deadline = time.monotonic() + timeout
    while True:
        seen = 0
        if directory.exists():
            with journal.Reader(path=str(directory)) as r:
                while r._next():
                    seen += 1
        if seen >= n:
            return
        assert time.monotonic() < deadline, f"{seen} of {n} entries written"
        time.sleep(0.02)
