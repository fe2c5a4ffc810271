"""A file's position, as sealed into every record it ends (``attrs.pos``).

``{"k": key, "off": offset, "fp": fingerprint, "fpn": fingerprinted bytes}``,
plus ``"cut": 1`` when the record does not end with a newline (a piece of an
over-long line, or a partial line), or ``"tail": hex`` (the exact bytes before
``off``) when a meta record carries it. That JSON is what archives hold and
what a restart resumes from: :meth:`FilePosition.to_pos` writes it exactly as
before versions existed. Version 1 has no ``"v"`` key: an absent version means
v1; a later version would write ``"v"`` and be refused by this reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auditd_py.record import Position

VERSION = 1


class PositionVersionError(ValueError):
    """A sealed position written by a newer version of this source."""


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where a file was read to (``off``), and what identifies that file and offset."""

    k: str
    off: int
    fp: str
    fpn: int
    cut: bool = False
    """The record ends without a newline: the bytes before ``off`` end with it."""
    tail: bytes | None = None
    """The exact bytes before ``off`` (meta records carry them)."""
    version: int = VERSION

    @classmethod
    def from_pos(cls, pos: Mapping[str, Any]) -> FilePosition:
        version = int(pos.get("v", 1))
        if version != VERSION:
            raise PositionVersionError(f"file position version {version} (this reads {VERSION})")
        return cls(
            k=str(pos.get("k")),
            off=int(pos.get("off", 0)),
            fp=str(pos.get("fp")),
            fpn=int(pos.get("fpn", 0)),
            cut=bool(pos.get("cut")),
            tail=bytes.fromhex(str(pos["tail"])) if "tail" in pos else None,
            version=version,
        )

    def to_pos(self) -> dict[str, Any]:
        """The sealed form; its key order is part of the archive's bytes."""
        pos: dict[str, Any] = {"k": self.k, "off": self.off, "fp": self.fp, "fpn": self.fpn}
        if self.cut:
            pos["cut"] = 1
        if self.tail is not None:
            pos["tail"] = self.tail.hex()
        return pos

    def before(self, record_tail: bytes) -> bytes:
        """The bytes that must stand just before ``off`` in its file (none at 0).

        ``record_tail``: the last bytes of the record that carried the position,
        followed by the newline the record's line ended with (unless ``cut``).
        """
        if not self.off:
            return b""
        tail = self.tail if self.tail is not None else record_tail + (b"" if self.cut else b"\n")
        return tail[-self.off :]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed position recovered from the archive, with the bytes before its offset."""

    pos: FilePosition
    before: bytes

    @classmethod
    def of(cls, p: Position) -> Sealed:
        pos = FilePosition.from_pos(p.pos)
        return cls(pos, pos.before(p.tail))
