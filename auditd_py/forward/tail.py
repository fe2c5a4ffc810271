"""Reading sealed records from a cursor, never past what is durable.

The archive is the forwarders' buffer. :class:`SealedTail` reads record lines
from a (segment, offset) position onwards, in order, across segment
boundaries, through compressed segments, and stops at the writer's durable
point: a record that a crash could still take back (written but not yet
fsynced; a torn tail that recovery would quarantine) is never sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from auditd_py.chain.encoding import scan_int
from auditd_py.store.compress import open_segment
from auditd_py.store.layout import Layout

Durable = Callable[[], tuple[str, int] | None]


def _seq(raw: bytes) -> int | None:
    """The seq of a record line (``{"seq":N,…``), None for anything else."""
    if raw.startswith(b'{"seq":'):
        end = raw.find(b",", 7, 28)
        digits = raw[7:end]
        if end > 7 and digits.isdigit():
            return int(digits)
    return scan_int(raw[:48], b"seq")


@dataclass(frozen=True, slots=True)
class Batch:
    """Lines read, and where the next read starts."""

    lines: list[tuple[int, bytes]]
    """(seq, record line without newline), in order."""
    segment: str | None
    offset: int
    skipped: str | None = None
    """Set when the cursor's segment was gone and reading jumped to the next one."""


class SealedTail:
    """Sealed record lines after a position (one reader per forwarder)."""

    def __init__(self, layout: Layout, durable: Durable) -> None:
        self.layout = layout
        self.durable = durable
        self._fh: IO[bytes] | None = None
        self._at: tuple[str, int] | None = None  # where self._fh is positioned

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._fh, self._at = None, None

    def _open(self, name: str, offset: int) -> IO[bytes]:
        """The segment's plain bytes positioned at ``offset`` (kept open between reads)."""
        if self._fh is not None and self._at == (name, offset):
            return self._fh
        self.close()
        path = self.layout.segment_path(name)
        fh = open_segment(path)
        if offset:
            if path.name.endswith(".jsonl"):
                fh.seek(offset)
            else:  # a compressed segment: decompress up to the position
                left = offset
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
        self._fh, self._at = fh, (name, offset)
        return fh

    def read(self, segment: str | None, offset: int, max_lines: int) -> Batch:
        """Up to ``max_lines`` complete, durable lines from (segment, offset)."""
        names = self.layout.segment_names()
        if not names:
            return Batch([], segment, offset)
        skipped = None
        if segment is None:
            segment, offset = names[0], 0
        elif segment not in names:
            # gone (retention outran the forwarder: only a disk action may do that)
            later = [n for n in names if n > segment]
            if not later:
                return Batch([], segment, offset)
            skipped, segment, offset = segment, later[0], 0
        durable = self.durable()
        out: list[tuple[int, bytes]] = []
        while len(out) < max_lines:
            limit: int | None = None
            if durable is not None:
                if segment > durable[0]:
                    break  # nothing of it is durable yet
                if segment == durable[0]:
                    limit = durable[1]
            if limit is not None and offset >= limit:
                break
            fh = self._open(segment, offset)
            raw = fh.readline()
            if raw.endswith(b"\n") and (limit is None or offset + len(raw) <= limit):
                offset += len(raw)
                self._at = (segment, offset)
                seq = _seq(raw)
                if seq is not None:  # anything else is not a record: verify reports it
                    out.append((seq, raw[:-1]))
                continue
            self.close()  # a partial read: start again from ``offset`` next time
            if raw:
                break  # a line not complete (or not durable) yet
            later = [n for n in self.layout.segment_names() if n > segment]
            if not later or (durable is not None and segment >= durable[0]):
                break  # the open segment's end
            segment, offset = later[0], 0  # a closed segment read to its end
        return Batch(out, segment, offset, skipped)
