"""A pre-allocated reserve file, given back when the archive's disk is full.

Retention must seal its ``retention.deleted`` record, durably, *before* it
deletes anything (docs/FORMAT.md 16). On a disk with no byte left that record
could never be written and no space could ever be freed. The reserve breaks the
deadlock: a few MiB allocated at start (``ARCHIVE/.reserve``, outside the
format, never read by verifiers), unlinked when a write fails for lack of space
so that the pending records, the deletion record and a checkpoint fit, and
allocated again once there is room.
"""

from __future__ import annotations

import os
from pathlib import Path

from auditd_py.store.layout import fsync_dir

DEFAULT_RESERVE = 8 << 20
NAME = ".reserve"


class Reserve:
    def __init__(self, root: Path, size: int = DEFAULT_RESERVE) -> None:
        self.path = root / NAME
        self.size = size
        self.released = False

    @property
    def missing(self) -> int:
        """Bytes owed to the reserve: ``size`` after it was given back, until it is again."""
        return self.size if self.released else 0

    @property
    def present(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self, free: int, headroom: int = 0) -> bool:
        """Allocate the reserve if it is missing and ``free`` still leaves ``headroom``."""
        if self.present:
            return True
        if free < self.size + max(headroom, self.size):
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            return False
        os.close(fd)
        fsync_dir(self.path.parent)
        self.released = False
        return True

    def release(self) -> int:
        """Give the space back; returns the bytes released (0 if there was no reserve)."""
        try:
            size = self.path.stat().st_size
            self.path.unlink()
        except FileNotFoundError:
            return 0
        fsync_dir(self.path.parent)
        self.released = True
        return size
