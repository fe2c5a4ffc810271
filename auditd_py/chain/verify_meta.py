"""The verifier's chain state, its epochs, and its meta-record checks (R5, R7, R8).

:class:`MetaChecks` is the base of :class:`~auditd_py.chain.verify.Verifier`:
the state a verification moves along (chain head, Merkle stack, epoch, the
segments read, where a retained archive starts), R6 at each epoch boundary,
and the checks of the daemon's own records: segment headers (R5, and the cut
of a retained archive, docs/FORMAT.md 16.2), torn-tail recovery records (R7)
and retention records (R8, with the deletion history of
:mod:`~auditd_py.chain.deletions`). Split from the verifier, which keeps the record
loop, so that neither class is a wall of code; pure, like the rest of the chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.deletions import DeletionHistory, check_checkpoint, check_fields
from auditd_py.chain.encoding import META_SOURCE, mac_state, parse_record
from auditd_py.chain.format import SEGMENT_NAME
from auditd_py.chain.keys import evolve_mac_key, same
from auditd_py.errors import Failure, IntegrityError

_HEX32 = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class SegmentRead:
    name: str
    line: int = 0
    size: int | None = None
    first_seq: int = 0
    end: tuple[int, bytes, bytes, tuple[bytes, ...]] | None = None
    """(seq_end, last link, last MAC, compact range) once the segment was read."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a retained archive starts (its first segment's header, 16.2)."""

    prev_segment: str
    seq: int
    link: bytes
    mac: bytes
    stack: tuple[bytes, ...]
    where: dict[str, Any]


class MetaChecks:
    """The state a verification moves along, R6 and the meta-record checks.

    The attributes are set by :class:`~auditd_py.chain.verify.Verifier`.
    """

    cps: list[Checkpoint]
    ci: int
    """Index (= epoch) of the checkpoint that will cover the next record."""
    seq: int
    link: bytes
    mac: bytes
    stack: list[bytes]
    first_seq: int
    segments: list[SegmentRead]
    recovered: list[dict[str, Any]]
    warnings: list[str]
    history: DeletionHistory
    _seg: SegmentRead | None
    _mac_key: bytes | None
    _mac: Any
    _boundary: int
    _cut: Cut | None
    _cut_accounted: bool
    _resync: bool
    in_sync: bool

    def _close_epochs(self) -> None:
        """R6: at each checkpoint boundary the chain head and Merkle root must match."""
        while self.ci < len(self.cps) and self.cps[self.ci].seq_end == self.seq:
            cp = self.cps[self.ci]
            if not (
                same(cp.chain_head, self.link)
                and same(cp.mac_head, self.mac)
                and same(cp.merkle_root, merkle.root(self.stack))
            ):
                where = self._where()
                raise IntegrityError(
                    f"records of epoch {cp.epoch} do not match its checkpoint "
                    "(chain head or Merkle root differs)",
                    what=Failure.CHECKPOINT_MISMATCH,
                    epoch=cp.epoch,
                    **where,
                )
            self.ci += 1
            if self._mac_key is not None:
                self._mac_key = evolve_mac_key(self._mac_key)
                self._mac = mac_state(self._mac_key)
        self._boundary = self.cps[self.ci].seq_end if self.ci < len(self.cps) else -1

    # ------------------------------------------------------------ records

    def _where(self) -> dict[str, Any]:
        if self._seg is None:
            return {}
        return {"file": f"segments/{self._seg.name}", "line": self._seg.line or None}

    def _check_header(self, line: bytes) -> None:
        seg = self._seg
        assert seg is not None
        obj = parse_record(line, strict=True)
        attrs = obj.get("attrs") if isinstance(obj.get("attrs"), dict) else {}
        assert isinstance(attrs, dict)
        if obj.get("source") != META_SOURCE or obj.get("event") != "segment.opened":
            raise IntegrityError(
                "segment does not start with its header record (segment.opened)",
                what=Failure.SEGMENT_HEADER,
            )
        prev = self.segments[-2].name if len(self.segments) > 1 else None
        if attrs.get("segment") != seg.name:
            raise IntegrityError(
                f"segment file holds the header of {attrs.get('segment')!r}: "
                "segment renamed, swapped or replayed",
                what=Failure.SEGMENT_SWAPPED,
                field="attrs.segment",
            )
        if prev is None and attrs.get("prev_segment") is not None:
            self._resume(attrs, seg)  # the segments before this one were deleted (16.2)
            return
        if attrs.get("prev_segment") != prev:
            raise IntegrityError(
                f"segment says it follows {attrs.get('prev_segment')!r}, but the segment "
                f"before it is {prev!r}: a segment is missing or out of order",
                what=Failure.MISSING_SEGMENT,
                field="attrs.prev_segment",
            )
        if self._resync:  # --all, after a failure in the segment before: resume here
            self._resync = False
            self._resume(attrs, seg, cut=False)
            return
        if attrs.get("prev_link") != self.link.hex():
            raise IntegrityError(
                "segment header's prev_link is not the last link of the previous segment",
                what=Failure.BROKEN_LINK,
                field="attrs.prev_link",
            )
        # Optional in archives written before retention existed; checked when present,
        # so that a segment that verifies can always become the first one (16.1).
        if "prev_mac" in attrs and attrs["prev_mac"] != self.mac.hex():
            raise IntegrityError(
                "segment header's prev_mac is not the MAC of the previous record",
                what=Failure.BROKEN_LINK,
                field="attrs.prev_mac",
            )
        if "merkle_range" in attrs and attrs["merkle_range"] != [n.hex() for n in self.stack]:
            raise IntegrityError(
                "segment header's merkle_range is not the compact range of the records before it",
                what=Failure.CHECKPOINT_MISMATCH,
                field="attrs.merkle_range",
            )

    def _resume(self, attrs: dict[str, Any], seg: SegmentRead, *, cut: bool = True) -> None:
        """Start a retained archive at its first segment's header (docs/FORMAT.md 16.2).

        The header states the chain state at the cut; it is trusted here and
        authenticated twice later: the next checkpoint's chain head, MAC head and
        Merkle root are computed from it (R6), and a sealed ``retention.deleted``
        record must state the same cut (F3). Without ``cut``: ``verify --all``
        resynchronises here after a failure in the segment before (FORMAT.md
        15.11); only R6 authenticates what the header states then.
        """
        prev = attrs.get("prev_segment")
        first = attrs.get("first_seq")
        link, mac, rng = attrs.get("prev_link"), attrs.get("prev_mac"), attrs.get("merkle_range")
        if not (
            isinstance(prev, str)
            and SEGMENT_NAME.fullmatch(prev)
            and prev < seg.name
            and type(first) is int
            and first > 0
            and isinstance(link, str)
            and _HEX32.fullmatch(link)
            and isinstance(mac, str)
            and _HEX32.fullmatch(mac)
            and isinstance(rng, list)
            and len(rng) == first.bit_count()
            and all(isinstance(n, str) and _HEX32.fullmatch(n) for n in rng)
        ):
            raise IntegrityError(
                f"the first segment says it follows {prev!r}, which is missing, and its "
                "header does not state where the chain resumes (first_seq, prev_link, "
                "prev_mac, merkle_range): segments were deleted"
                if cut
                else "after the failure before it, this segment's header does not state "
                "where the chain resumes (first_seq, prev_link, prev_mac, merkle_range)",
                what=Failure.MISSING_SEGMENT if cut else Failure.SEGMENT_HEADER,
                field="attrs.prev_segment" if cut else "attrs",
            )
        if cut and self.cps[-1].seq_end < first:
            raise IntegrityError(
                f"records before seq {first} are missing and no checkpoint covers them: "
                "retention deletes only checkpointed records",
                what=Failure.MISSING_SEGMENT,
                field="attrs.first_seq",
            )
        while self.ci < len(self.cps) and self.cps[self.ci].seq_end < first:
            self.ci += 1  # epochs that ended inside the deleted range
            if self._mac_key is not None:
                self._mac_key = evolve_mac_key(self._mac_key)
                self._mac = mac_state(self._mac_key)
        self.seq = seg.first_seq = first
        self.link, self.mac = bytes.fromhex(link), bytes.fromhex(mac)
        self.stack[:] = [bytes.fromhex(n) for n in rng]  # in place: records() aliases it
        if cut:
            self.first_seq = first
            self._cut = Cut(
                prev, first, self.link, self.mac, tuple(self.stack), {**self._where(), "seq": first}
            )
        else:
            self.in_sync = True
        self._close_epochs()  # R6 at the cut, when an epoch ended exactly there

    def _check_meta(self, line: bytes, seg: SegmentRead) -> None:
        obj = parse_record(line, strict=True)
        event = obj.get("event")
        attrs = obj.get("attrs") if isinstance(obj.get("attrs"), dict) else {}
        assert isinstance(attrs, dict)
        if event == "segment.opened" and seg.line != 1:
            raise IntegrityError(
                "segment header record inside a segment", what=Failure.SEGMENT_HEADER
            )
        if event == "recovery.torn_tail":
            name = attrs.get("segment")
            done = {s.name: s.size for s in self.segments if s.size is not None}
            # A segment whose only line was torn is removed after the cut (offset 0):
            # it held no sealed byte, and the next header's prev_segment skips it.
            removed = (
                attrs.get("offset") == 0
                and isinstance(name, str)
                and name not in done
                and SEGMENT_NAME.fullmatch(name) is not None
                and name < seg.name
            ) or self._before_cut(name)
            if not removed and (name not in done or attrs.get("offset") != done[name]):
                raise IntegrityError(
                    f"torn-tail record names {name!r} at offset {attrs.get('offset')}, which "
                    "does not match that segment's length: records were cut after sealing",
                    what=Failure.TRUNCATED,
                    field="attrs.offset",
                )
            self.recovered.append(
                {
                    "seq": self.seq,
                    "segment": name,
                    "offset": attrs.get("offset"),
                    "bytes": attrs.get("length"),
                    "kept_in": attrs.get("quarantine"),
                }
            )
        elif event == "retention.deleted":
            self._check_retention(line, obj, attrs)

    def _before_cut(self, name: object) -> bool:
        """A segment name from before a retained archive's first segment (deleted)."""
        return (
            self._cut is not None
            and isinstance(name, str)
            and SEGMENT_NAME.fullmatch(name) is not None
            and name < self.segments[0].name
        )

    def _check_retention(self, line: bytes, obj: dict[str, Any], attrs: dict[str, Any]) -> None:
        """R8: a deletion record is consistent with what it deleted (docs/FORMAT.md 16.3)."""
        name = attrs.get("segment")

        def bad(why: str, field: str) -> IntegrityError:
            return IntegrityError(
                f"retention record for {name!r}: {why}", what=Failure.RETENTION, field=field
            )

        check_fields(attrs, self.seq, bad)  # R8.1
        check_checkpoint(attrs, self.ci, self.cps, bad)  # R8.2
        first, end = attrs["seq_first"], attrs["seq_end"]
        stated = (end, attrs["last_link"], attrs["last_mac"], attrs["merkle_range"])
        present = self._match_retention(attrs, first, stated, bad)  # R8.3
        self.history.record(line, obj, present, bad)  # R8.4, R8.5

    def _match_retention(
        self,
        attrs: dict[str, Any],
        first: int,
        stated: tuple[Any, ...],
        bad: Callable[[str, str], Exception],
    ) -> bool:
        """R8.3: what the record states matches what it deleted, or the cut.

        True when the segment is still present (case a: an interrupted deletion).
        """
        name, end = attrs["segment"], stated[0]
        read = {s.name: s for s in self.segments}
        cut = self._cut
        if name in read:
            s = read[name]
            if (
                s.end is None
                or stated
                != (
                    s.end[0],
                    s.end[1].hex(),
                    s.end[2].hex(),
                    [n.hex() for n in s.end[3]],
                )
                or first != s.first_seq
            ):
                raise bad("does not match the segment, which is still present", "attrs.seq_end")
            if attrs["file"] == name and attrs["bytes"] != s.size:
                raise bad(
                    f"states {attrs['bytes']} bytes, the segment holds {s.size}", "attrs.bytes"
                )
            self.warnings.append(
                f"segments/{name}: still present although a retention record deleted it "
                "(the deletion was interrupted; the daemon completes it on its next start)"
            )
        elif cut is not None and name == cut.prev_segment:
            if stated != (cut.seq, cut.link.hex(), cut.mac.hex(), [n.hex() for n in cut.stack]):
                raise bad(
                    "does not state the cut the archive's first segment resumes from",
                    "attrs.last_link",
                )
            self._cut_accounted = True
        elif not (self._before_cut(name) and cut is not None and end <= cut.seq):
            raise bad(
                "names a segment that is neither present nor before the first one",
                "attrs.segment",
            )
        return name in read
