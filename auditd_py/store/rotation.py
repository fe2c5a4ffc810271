"""The writer's segments: opening the next one (with its header record), rotating.

A base class of :class:`~auditd_py.store.writer.ArchiveWriter`. A segment is
created exclusively and made append-only before its first byte; its first
record is its ``segment.opened`` header, which states where the chain stands
(docs/FORMAT.md 11.1), so that the archive can later start there (16.2).
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import META_SOURCE, Fields
from auditd_py.chain.format import SEGMENT_NAME, segment_name
from auditd_py.chain.seal import Sealer
from auditd_py.clock import Clock
from auditd_py.errors import ArchiveError, DiskFullError
from auditd_py.store.compress import is_compressed
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import FILE_MODE, Layout, fsync_dir
from auditd_py.store.state import WriterState

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""A write refused for lack of space (or quota)."""


def disk_full(exc: OSError, path: object) -> DiskFullError:
    return DiskFullError(f"file system full: {exc.strerror}", file=str(path))


class WriterSegments:
    """Opening and rotating segments; the attributes are the writer's (its constructor)."""

    layout: Layout
    sealer: Sealer
    clock: Clock
    worm: Worm
    segment: str | None
    segment_opened_ns: int
    segment_first_epoch: int
    _fd: int | None
    _offset: int
    _saved: WriterState

    def _seal(self, f: Fields) -> int:
        raise NotImplementedError  # the writer's

    def flush(self, *, sync: bool = True) -> None:
        raise NotImplementedError  # the writer's

    def end_epoch(self, reason: str) -> Checkpoint:
        raise NotImplementedError  # the writer's

    def _open_segment(self) -> None:
        names = self.layout.segment_names()
        nums = [int(m["no"]) for n in names if (m := SEGMENT_NAME.fullmatch(n))]
        prev = names[-1] if names else None
        prev_path = self.layout.segment_path(prev) if prev is not None else None
        if prev_path is not None and not is_compressed(prev_path) and prev_path.stat().st_size == 0:
            # Created, but a crash came before its header was written (or its only
            # line was torn and has been quarantined): it holds no sealed byte.
            self.worm.release(prev_path)
            prev_path.unlink()
            names.pop()
            prev = names[-1] if names else None
        if prev is not None:  # closed for good (rotated, or left open by a crash)
            self.worm.immutable(self.layout.segment_path(prev))
        last = self._saved.last_segment_no
        n = max([*nums, last if last is not None else -1]) + 1
        name = segment_name(n)
        path = self.layout.segments / name
        try:
            self._fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE
            )
            os.fchmod(self._fd, FILE_MODE)  # whatever the umask
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise disk_full(exc, path) from exc
            raise ArchiveError(f"cannot create segment: {exc.strerror}", file=str(path)) from exc
        try:
            self.worm.append_only(path)  # before the first byte: chattr +a
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        fsync_dir(self.layout.segments)
        self.segment = name
        self._offset = 0
        self.segment_opened_ns = self.clock.now_ns()
        self.segment_first_epoch = self.sealer.epoch
        self._saved = replace(self._saved, last_segment_no=n)
        self._seal(
            Fields(
                time_ns=self.clock.now_ns(),
                source=META_SOURCE,
                message=f"segment {name} opened".encode(),
                event="segment.opened",
                attrs={
                    "segment": name,
                    "prev_segment": prev,
                    "prev_link": self.sealer.link.hex(),
                    "first_seq": self.sealer.seq,
                    "prev_mac": self.sealer.mac.hex(),
                    "merkle_range": [n.hex() for n in self.sealer.stack],
                },
            )
        )

    # ------------------------------------------------------------ sealing

    def rotate_segment(self, reason: str) -> Checkpoint:
        """Close the open segment with a checkpoint and continue in a new one.

        Same crash story as an epoch end followed by a restart: the checkpoint and
        the state (which names the old segment and its length) are durable before
        the old file is closed; a crash before the new segment's header is written
        leaves an empty file that :meth:`open` removes. The new segment starts with
        its ``segment.opened`` header, followed by a ``segment.rotated`` record.
        """
        cp = self.end_epoch("close")  # the format's reasons are a closed set; this is one
        assert self._fd is not None
        prev = self.segment
        os.close(self._fd)
        self._fd = None
        try:
            self._open_segment()
        except DiskFullError:
            assert prev is not None
            self._reopen(prev)  # no room for a new file: go on in this one, rotate later
            raise
        self._seal(
            Fields(
                time_ns=self.clock.now_ns(),
                source=META_SOURCE,
                message=f"segment {prev} closed ({reason}); continuing in {self.segment}".encode(),
                event="segment.rotated",
                attrs={
                    "reason": reason,
                    "prev_segment": prev,
                    "segment": self.segment,
                    "checkpoint": cp.epoch,
                },
            )
        )
        self.flush(sync=True)
        return cp

    def _reopen(self, name: str) -> None:
        """Continue appending to ``name`` after a rotation could not create the next one."""
        path = self.layout.segment_path(name)
        self.worm.release(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.worm.append_only(path)
        self.segment = name
        self._offset = os.fstat(self._fd).st_size
