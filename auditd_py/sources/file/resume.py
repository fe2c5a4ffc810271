"""Sealed positions at start: matched to their files, or kept for their copies.

On start, each sealed position is matched to a file with the same identity
(under the globs, or renamed next to its last path by a rotation while we were
stopped); the fingerprint and the bytes just before the offset must match the
sealed record, or the file is a different one that reused the inode and is
read from the start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from auditd_py.record import Position
from auditd_py.sources.file.discovery import Ident, ident_of
from auditd_py.sources.file.fingerprint import fingerprint
from auditd_py.sources.file.origins import Origin, Origins
from auditd_py.sources.file.position import PositionVersionError, Sealed
from auditd_py.sources.file.rotation import copy_decided_before, origin_after_stop, too_short_for
from auditd_py.sources.file.tracked import Tracked


class Resume:
    """The sealed positions of one source whose file has not been found yet."""

    def __init__(self, source: str, fingerprint_bytes: int, origins: Origins) -> None:
        self.source = source
        self.fingerprint_bytes = fingerprint_bytes
        self.origins = origins
        self._sealed: dict[Ident, Sealed] = {}
        self._fps: dict[tuple[str, int], int] = {}

    def load(self, positions: Mapping[str, Position]) -> list[tuple[str, str]]:
        """Take this source's positions; returns (key, why) of those it cannot read."""
        refused: list[tuple[str, str]] = []
        prefix = self.source + ":"
        for k, p in positions.items():
            if not k.startswith(prefix):
                continue
            ident = ident_of(k)
            if ident is None:
                continue
            try:
                sealed = Sealed.of(p)
            except PositionVersionError as exc:
                refused.append((k, str(exc)))
                continue
            self._sealed[ident] = sealed
            pos = sealed.pos
            self._fps[(pos.fp, pos.fpn)] = self._fps.get((pos.fp, pos.fpn), 0) + 1
            if pos.off and pos.fpn >= self.fingerprint_bytes:
                # Its copy, should its file be gone (dropped again if the file is found).
                self.origins.add(Origin(k, pos.fp, pos.fpn, pos.off, sealed.before, False))
        return refused

    def __contains__(self, ident: object) -> bool:
        return ident in self._sealed

    def __iter__(self) -> Iterator[Ident]:
        return iter(list(self._sealed))

    def pop(self, ident: Ident) -> Sealed | None:
        return self._sealed.pop(ident, None)

    def forget(self, ident: Ident) -> Sealed:
        """A sealed position whose file is gone (deleted while we were stopped)."""
        sealed = self._sealed.pop(ident)
        self.origins.drop(sealed.pos.k)
        return sealed

    def fits(self, t: Tracked, sealed: Sealed, size: int) -> bool:
        """Is ``t`` the file the sealed position was taken in?"""
        pos = sealed.pos
        if too_short_for(pos, size):
            return False
        if fingerprint(os.pread(t.fd, pos.fpn, 0)) != pos.fp:
            return False
        tail = sealed.before
        if os.pread(t.fd, len(tail), pos.off - len(tail)) != tail:
            return False
        t.tail = tail
        return True

    def keep_for_copy(self, t: Tracked, sealed: Sealed) -> None:
        """A sealed position that no longer fits its own file: keep it for the copy.

        With copytruncate, the daemon may have read the original past the point
        logrotate copied it at (the lines written between the copy and the
        truncate), and been killed before its decision about the copy was sealed.
        The copy is then shorter than the sealed offset, and everything in it is
        sealed already: recognised by its fingerprint, it holds nothing new.

        That reasoning needs the original to have been truncated, which is what
        copytruncate does and what we check: the same inode, now shorter than the
        sealed offset or holding other bytes before it, and not starting with the
        fingerprinted bytes again (an inode reused by a new file written the same
        way, or a file rewritten in place, would; then a shorter file that starts
        like it is read from the start, as before). A file too short to tell
        (e.g. empty right after the truncation) counts as truncated. If another
        sealed position has the same fingerprint, that is the copy, decided and
        sealed before the kill: nothing is left to match.
        """
        pos = sealed.pos
        self.origins.drop(pos.k)
        if copy_decided_before(pos, self._fps.get((pos.fp, pos.fpn), 0)):
            return
        size = os.fstat(t.fd).st_size
        rewritten = size >= pos.fpn and fingerprint(os.pread(t.fd, pos.fpn, 0)) == pos.fp
        org = origin_after_stop(
            pos, sealed.before, rewritten=rewritten, fingerprint_bytes=self.fingerprint_bytes
        )
        if org is not None:
            self.origins.add(org)
