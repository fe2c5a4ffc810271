"""Pure decisions about rotation: no I/O here, only what stats, fingerprints,
offsets and sealed positions say. The callers read the bytes (in the order the
decisions need them: a file may be truncated by logrotate between two reads).

* the same file: its sealed position still fits (:func:`too_short_for`);
* a truncation or a rewrite (:func:`truncation`);
* a rotated copy: :class:`Head` and the ``copy_*`` predicates, used by
  :mod:`.copies`; ``WAIT`` and ``RETRY`` are its answers that are not offsets;
* a renamed file to let go of (:func:`let_go`).
"""

from __future__ import annotations

from typing import Literal

from auditd_py.sources.file.fingerprint import fingerprint
from auditd_py.sources.file.origins import Origin
from auditd_py.sources.file.position import FilePosition

WAIT = -1  # copy_origin: "cannot tell yet"
RETRY = -2  # copy_origin: an original changed while compared: decide once its truncation is seen


class Head:
    """The first bytes of a candidate copy, and whether they start like a file read."""

    def __init__(self, head: bytes) -> None:
        self.bytes = head
        self._fps: dict[int, str] = {}

    def starts_like(self, fp: str, fpn: int) -> bool:
        """Do the first ``fpn`` bytes of the candidate hash to ``fp``?"""
        if not 0 < fpn <= len(self.bytes):
            return False
        if fpn not in self._fps:
            self._fps[fpn] = fingerprint(self.bytes[:fpn])
        return self._fps[fpn] == fp


def copy_too_short_to_compare(org: Origin, size: int) -> bool:
    """A copy of a truncated file, too short to compare with its fingerprint: the
    bytes before its sealed offset are all there is to go by."""
    return org.truncated and 0 < size < org.fpn


def truncation(was: int, size: int) -> Literal["shrank", "rewritten"]:
    """A file whose bytes no longer fit what was read (``was`` bytes): which change?"""
    return "shrank" if size < was else "rewritten"


def too_short_for(pos: FilePosition, size: int) -> bool:
    """A file of ``size`` bytes cannot be the one ``pos`` was taken in."""
    return size < pos.off or size < pos.fpn


def copy_decided_before(pos: FilePosition, sealed_with_fp: int) -> bool:
    """A sealed position that no longer fits its file: does it stand for no copy?

    Nothing read (no offset or fingerprint), or another sealed position has the
    same fingerprint: that is the copy, decided and sealed before the kill.
    """
    return not pos.off or not pos.fpn or sealed_with_fp > 1


def origin_after_stop(
    pos: FilePosition, before: bytes, *, rewritten: bool, fingerprint_bytes: int
) -> Origin | None:
    """What a sealed position that no longer fits its own file leaves for a copy.

    ``rewritten``: the file starts with the fingerprinted bytes again (an inode
    reused by a new file written the same way, or rewritten in place); then a
    short fingerprint alone proves too little (see copies.copy_origin).
    """
    if rewritten and pos.fpn < fingerprint_bytes:
        return None
    return Origin(pos.k, pos.fp, pos.fpn, pos.off, before, not rewritten)


def undecided(got: int | None, idle: float, wait: float) -> bool:
    """A pending file's copy decision must wait (RETRY, or WAIT while it grows)."""
    return got == RETRY or (got == WAIT and idle < wait)


def decided_offset(got: int | None, wait_off: int) -> int:
    """Where a pending file is read from, once decided (WAIT: it stayed as it is)."""
    if got == WAIT and wait_off:  # a copy of a file that was not truncated (its tail too)
        return wait_off
    return got if got is not None and got != WAIT else 0


def let_go(now: float, last_data: float, rotated_at: float, wait: float) -> bool:
    """A file renamed or removed: idle long enough since, and read to its end."""
    return now - last_data >= wait and now - rotated_at >= wait
