"""A file being read: its identity, descriptor, offset and what identifies it."""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from auditd_py.sources.file.discovery import Ident
from auditd_py.sources.file.fingerprint import fingerprint
from auditd_py.sources.file.origins import Origin
from auditd_py.sources.file.position import FilePosition

CHUNK = 1 << 18
"""The most bytes read from a file at once."""


RELEASED = -2
"""``Tracked.handle`` of a file no longer tracked (-1: closed for being idle)."""


class Descriptors:
    """How many of a source's files hold an open descriptor (its budget is the config's)."""

    def __init__(self) -> None:
        self.open = 0


# Not frozen: the tailer thread advances it with every read (one per open file).
@dataclass(eq=False)
class Tracked:
    key: str
    path: str
    dev: int
    ino: int
    handle: int
    """The open descriptor, or -1 while closed for being idle (:meth:`close_idle`)."""
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
    fds: Descriptors | None = None
    closed_as: tuple[int, int] | None = None
    """(size, mtime_ns) when closed for being idle: a change reopens it."""

    @property
    def fd(self) -> int:
        """The descriptor; a file closed for being idle is reopened by identity first."""
        if self.handle == RELEASED:  # no longer tracked: never opened again behind our back
            raise OSError(errno.EBADF, f"{self.path} is no longer read")
        if self.handle < 0:
            self.reopen(self.path)
        return self.handle

    def close_idle(self) -> None:
        """Close the descriptor of a file read to its end; :attr:`fd` reopens it."""
        st = os.fstat(self.handle)
        os.close(self.handle)
        self.handle, self.closed_as = -1, (st.st_size, st.st_mtime_ns)
        if self.fds is not None:
            self.fds.open -= 1

    def reopen(self, path: str) -> None:
        """Open ``path`` again, if it is still this file (OSError if not)."""
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(path, flags)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.ident or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(errno.ESTALE, f"{path} is no longer the file read")
        self.handle, self.closed_as = fd, None
        if self.fds is not None:
            self.fds.open += 1

    def head_in_memory(self, n: int) -> bool:
        """Closed while idle, and its first ``n`` bytes (or all of it) are :attr:`head`."""
        return self.closed_as is not None and (self.fpn >= n or self.fpn == self.closed_as[0])

    def stirred(self) -> bool:
        """Closed while idle: did its path change since (grew, shrank, replaced, gone)?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        if (st.st_dev, st.st_ino) != self.ident:
            return True
        return (st.st_size, st.st_mtime_ns) != self.closed_as

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
        if self.handle < 0:  # closed while idle: a change shows in its stat
            return self.stirred()
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
