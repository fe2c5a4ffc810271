"""journald's Forward Secure Sealing as an anchor: the same lines, sealed and verified.

``systemd-journal-remote --seal=yes`` writes the lines (given in the journal
export format, prepared before the clock starts) into a sealed journal, and
``journalctl --verify --verify-key=KEY`` verifies it (docs: systemd-journal-remote(8),
journalctl(1) ``--setup-keys``). FSS needs a sealing key at
``/var/log/journal/MACHINE-ID/fss``: :func:`fss_key` makes one with
``journalctl --setup-keys`` and :func:`restore` puts back whatever was there.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REMOTE = Path("/lib/systemd/systemd-journal-remote")
JOURNAL = Path("/var/log/journal")


@dataclass(frozen=True, slots=True)
class FssSetup:
    key: str
    fss: Path
    backup: Path | None
    made_dir: bool


def available() -> bool:
    return REMOTE.exists() and shutil.which("journalctl") is not None


def fss_key() -> FssSetup:
    """A fresh FSS sealing key for this machine (the old one is kept aside); its verify key."""
    mid = Path("/etc/machine-id").read_text().strip()
    d = JOURNAL / mid
    made = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    fss = d / "fss"
    backup = None
    if fss.exists():
        backup = d / "fss.auditd-bench-backup"
        shutil.copy2(fss, backup)
    out = subprocess.run(
        ["journalctl", "--setup-keys", "--force", "--interval=15min"],
        capture_output=True,
        text=True,
        check=True,
    )
    return FssSetup(out.stdout.strip(), fss, backup, made)


def restore(s: FssSetup) -> None:
    s.fss.unlink(missing_ok=True)
    if s.backup is not None:
        s.backup.replace(s.fss)
    if s.made_dir:
        shutil.rmtree(s.fss.parent, ignore_errors=True)


def export(src: Path, dst: Path) -> None:
    """The lines of ``src`` as journal export entries, stamped now (inside the key's epoch)."""
    t = time.time_ns() // 1000
    with open(src, "rb") as fin, open(dst, "wb", buffering=1 << 20) as out:
        write = out.write
        for i, line in enumerate(fin):
            write(
                b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n"
                b"_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=bench\n"
                b"MESSAGE=%s\n\n" % (t + i, i + 1, line.rstrip(b"\n"))
            )


def seal_argv(export_file: Path, out_dir: Path) -> list[str]:
    return [
        str(REMOTE),
        "--seal=yes",
        "--split-mode=none",
        f"--output={out_dir / 'remote.journal'}",
        str(export_file),
    ]


def verify_argv(out_dir: Path, key: str) -> list[str]:
    return ["journalctl", f"--directory={out_dir}", "--verify", f"--verify-key={key}"]
