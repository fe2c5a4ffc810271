"""A file being read: its identity, descriptor, offset and what identifies it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from auditd_py.sources.file.discovery import Ident
from auditd_py.sources.file.fingerprint import fingerprint
from auditd_py.sources.file.origins import Origin
from auditd_py.sources.file.position import FilePosition

CHUNK = 1 << 18
"""The most bytes read from a file at once."""


# Not frozen: the tailer thread advances it with every read (one per open file).
@dataclass(eq=False)
class Tracked:
    key: str
    path: str
    dev: int
    ino: int
    fd: int
    off: int
    fp: str
    fpn: int
    partial: bytes = b""
    partial_since: float = 0.0
    rotated_at: float | None = None
    last_data: float = field(default_factory=time.monotonic)
    truncations: int = 0
    splitting: bool = False
    """Pieces of the current (over-long) line were sealed already: its rest is a piece too."""
    tail: bytes = b""
    """The last bytes (≤ 32) before ``off``, as read: identifies a copy of this file."""
    pending: bool = False
    """A new file that may be a copy still being written: not read until decided."""
    seen_size: int = 0
    wait_off: int = 0
    wait_tail: bytes = b""
    head: bytes = b""
    """The first ``fpn`` bytes, as fingerprinted (compared in memory, not re-read)."""
    doubt: Origin | None = None
    """Read from 0 although it starts like the sealed part of ``doubt`` (meta-logged)."""

    @property
    def ident(self) -> Ident:
        return (self.dev, self.ino)

    def position(self, *, cut: bool = False) -> dict[str, Any]:
        """The sealed position of what was read so far."""
        return FilePosition(self.key, self.off, self.fp, self.fpn, cut=cut).to_pos()

    def position_with_tail(self) -> dict[str, Any]:
        """The position of ``t`` as a meta record carries it (with its exact tail).

        Sealing it when a file is opened matters for a copy opened at an offset:
        if nothing new is ever read from it, this is the only sealed trace that
        its first ``off`` bytes are done. A file opened at 0 carries none: the
        position it would replace may still be needed (a file truncated while we
        were stopped: its sealed offset says where its copy starts).
        """
        return FilePosition(self.key, self.off, self.fp, self.fpn, tail=self.tail).to_pos()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def changed(self) -> bool:
        """Was it truncated or rewritten since we read it (its bytes no longer fit)?"""
        size = os.fstat(self.fd).st_size
        if size < self.off + len(self.partial):
            return True
        if self.fpn and os.pread(self.fd, self.fpn, 0) != self.head:
            return True
        return (
            bool(self.tail)
            and os.pread(self.fd, len(self.tail), self.off - len(self.tail)) != self.tail
        )

    def refingerprint(self, fingerprint_bytes: int, size: int) -> None:
        head = os.pread(self.fd, min(fingerprint_bytes, size), 0)
        self.head, self.fp, self.fpn = head, fingerprint(head), len(head)
