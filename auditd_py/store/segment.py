"""A segment's header record as the store reads it (docs/FORMAT.md 11.1).

Retention (which segments may go), the writer (what a deletion record states)
and the reader (where a retained archive starts) all need the first line of a
segment file; it is read here, below all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditd_py.chain.encoding import parse_record
from auditd_py.errors import ArchiveError, FormatError, IntegrityError
from auditd_py.store.bounded import CORRUPT, open_lines


@dataclass(frozen=True, slots=True)
class Header:
    """What retention needs from a segment's header record (docs/FORMAT.md 11.1)."""

    name: str
    seq: int
    time_ns: int
    prev_segment: str | None
    prev_link: str | None
    prev_mac: str | None
    merkle_range: tuple[str, ...] | None

    @property
    def resumable(self) -> bool:
        """The archive can start at this segment (its header states the cut)."""
        return self.prev_mac is not None and self.merkle_range is not None


def read_header(path: Path, name: str) -> Header:
    """Parse the first line of a segment file (plain or compressed)."""
    try:
        with open_lines(path, str(path)) as fh:
            line = fh.readline()
    except IntegrityError as exc:  # longer than a record may be (store.bounded)
        raise ArchiveError(f"segment header: {exc.message}", file=str(path)) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot read segment header: {exc.strerror}", file=str(path)) from exc
    except CORRUPT as exc:  # a damaged compressed segment (FORMAT.md 11.4)
        raise ArchiveError(f"cannot decompress segment: {exc}", file=str(path)) from exc
    if not line.endswith(b"\n"):
        raise ArchiveError("segment has no complete header line", file=str(path))
    try:
        obj = parse_record(line[:-1])
    except FormatError as exc:
        raise ArchiveError(
            f"segment header is not a record: {exc.message}", file=str(path)
        ) from exc
    attrs = obj.get("attrs") if isinstance(obj.get("attrs"), dict) else {}
    assert isinstance(attrs, dict)
    if obj.get("event") != "segment.opened" or attrs.get("segment") != name:
        raise ArchiveError("first line is not this segment's header", file=str(path))
    rng = attrs.get("merkle_range")
    return Header(
        name=name,
        seq=int(obj.get("seq", -1)),
        time_ns=int(obj.get("time", 0)),
        prev_segment=_str(attrs.get("prev_segment")),
        prev_link=_str(attrs.get("prev_link")),
        prev_mac=_str(attrs.get("prev_mac")),
        merkle_range=tuple(str(x) for x in rng) if isinstance(rng, list) else None,
    )


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
