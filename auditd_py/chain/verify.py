"""Streaming verification of an archive (pure: the caller reads the files).

Checks are numbered as in docs/FORMAT.md section "Verification":

* C1–C8 run over the checkpoints before any record is read;
* R1–R7 run for each record line, in order;
* F1–F2 run at the end.

The first failed check raises :class:`~auditd_py.errors.IntegrityError` (or
:class:`~auditd_py.errors.FormatError`) whose diagnostics name the file, the
line, the seq and what failed. Memory is constant in the number of records.
"""

from __future__ import annotations

import re
from binascii import hexlify, unhexlify
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.checkpoint_chain import check_anchor, check_checkpoints
from auditd_py.chain.encoding import (
    _CLOSE_NL,
    _LEAF,
    _LINK,
    _LINK_OPEN,
    _MAC_OPEN,
    _NODE,
    META_SOURCE,
    SEAL_SUFFIX_LEN,
    genesis_link,
    mac_state,
    parse_record,
    scan_int,
)
from auditd_py.chain.format import SEGMENT_NAME
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import evolve_mac_key, same
from auditd_py.chain.link import check_record
from auditd_py.errors import Failure, FormatError, IntegrityError

_HEX32 = re.compile(r"[0-9a-f]{64}")
_META_MARK = b'"source":"' + META_SOURCE.encode() + b'",'


@dataclass(frozen=True, slots=True)
class Report:
    """What a successful verification established."""

    mode: str
    archive: str
    records: int
    sealed_records: int
    unsealed_records: int
    segments: int
    checkpoints: int
    first_time: int | None
    last_time: int | None
    anchor_epoch: int | None
    recovered: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    first_seq: int = 0
    """The seq the archive starts at: records before it were deleted by retention."""
    retention: tuple[dict[str, Any], ...] = ()
    """The ``retention.deleted`` records read (segments deleted by policy)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "archive": self.archive,
            "records": self.records,
            "sealed_records": self.sealed_records,
            "unsealed_records": self.unsealed_records,
            "segments": self.segments,
            "checkpoints": self.checkpoints,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "anchor_epoch": self.anchor_epoch,
            "recovered": list(self.recovered),
            "warnings": list(self.warnings),
            "first_seq": self.first_seq,
            "retention": list(self.retention),
        }


@dataclass(slots=True)
class _Segment:
    name: str
    line: int = 0
    size: int | None = None
    first_seq: int = 0
    end: tuple[int, bytes, bytes, tuple[bytes, ...]] | None = None
    """(seq_end, last link, last MAC, compact range) once the segment was read."""


@dataclass(frozen=True, slots=True)
class _Cut:
    """Where a retained archive starts (its first segment's header, 16.2)."""

    prev_segment: str
    seq: int
    link: bytes
    mac: bytes
    stack: tuple[bytes, ...]
    where: dict[str, Any]


class Verifier:
    """Feed it checkpoints at construction, then every segment's lines in order."""

    def __init__(
        self,
        identity_bytes: bytes,
        checkpoints: Sequence[tuple[str, bytes]],
        *,
        public_key: bytes,
        mac_key: bytes | None = None,
        anchor: bytes | None = None,
        require_sealed: bool = False,
        identity_file: str = "archive.json",
    ) -> None:
        self.identity = Identity.from_bytes(identity_bytes, file=identity_file)
        if not same(self.identity.public_key, public_key):
            raise IntegrityError(
                "the archive names a different public key than the one given: "
                "wrong key, or the identity file was replaced",
                what=Failure.IDENTITY,
                file=identity_file,
                field="public_key",
            )
        self.mode = "key" if mac_key is not None else "public-key"
        self.require_sealed = require_sealed
        self._mac_key = mac_key
        self._mac = mac_state(mac_key) if mac_key is not None else None
        self.cps = check_checkpoints(self.identity, checkpoints, public_key)  # C1–C8
        self._cp_names = [n for n, _ in checkpoints]
        self.anchor_epoch = (
            check_anchor(self.identity, self.cps, self._cp_names, anchor)
            if anchor is not None
            else None
        )
        self.seq = 0
        self.link = genesis_link(identity_bytes)
        self.mac = ZERO
        self.stack: list[bytes] = []
        self.ci = 0  # index (= epoch) of the checkpoint that will cover the next record
        self.segments: list[_Segment] = []
        self._seg: _Segment | None = None
        self._first_body: bytes | None = None
        self._last_body: bytes | None = None
        self._unsealed_at: dict[str, Any] | None = None
        self._boundary = -1
        self.recovered: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.first_seq = 0
        self._cut: _Cut | None = None
        self._cut_accounted = False
        self.retention: list[dict[str, Any]] = []
        self._close_epochs()

    # ------------------------------------------------------------ epochs

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

    def begin_segment(self, name: str) -> None:
        self._seg = _Segment(name, first_seq=self.seq)
        self.segments.append(self._seg)

    def end_segment(self, size: int, torn_bytes: int = 0, *, last: bool = False) -> None:
        seg = self._seg
        assert seg is not None
        seg.size = size
        seg.end = (self.seq, self.link, self.mac, tuple(self.stack))
        if seg.line == 0 and last and not torn_bytes:
            self.warnings.append(
                f"segments/{seg.name}: empty last segment (a writer stopped before its "
                "header); removed by the next writer"
            )
        elif seg.line == 0 and not (last and torn_bytes):
            raise IntegrityError(
                "segment is empty (its header record is missing)",
                what=Failure.SEGMENT_HEADER,
                file=f"segments/{seg.name}",
            )
        if torn_bytes:
            if not last:
                raise IntegrityError(
                    f"{torn_bytes} bytes without a final newline end a segment that is not "
                    "the last: an unrecovered tail or appended garbage",
                    what=Failure.FORMAT,
                    file=f"segments/{seg.name}",
                    line=seg.line + 1,
                )
            self.warnings.append(
                f"segments/{seg.name}: torn last line ({torn_bytes} bytes after offset "
                f"{size}) from an interrupted write; not sealed, recovered by the next writer"
            )
        self._seg = None

    def record(self, line: bytes) -> None:
        """Check one record line (without its newline)."""
        seg = self._seg
        assert seg is not None
        seg.line += 1
        seq = self.seq  # R6 runs after the record is accepted, when self.seq has moved on
        try:
            self._record(line, seg)
        except (IntegrityError, FormatError) as exc:
            self._locate(exc, seq)
            raise

    def _locate(self, exc: IntegrityError | FormatError, seq: int) -> None:
        where = self._where()
        if "seq" not in exc.where:
            where["seq"] = seq
        if "what" not in exc.where:
            where["what"] = Failure.FORMAT
        exc.where = {**where, **exc.where}

    def records(
        self, lines: Iterable[bytes], progress: Callable[[int], None] | None = None
    ) -> tuple[int, int]:
        """Check every line of the current segment; return (complete bytes, torn bytes).

        ``lines`` yields raw lines *with* their newline (a file opened ``rb``).
        The checks are those of :meth:`record`. An ordinary data record takes a
        fast path that keeps the chain in local variables and compares the whole
        stored seal suffix with the one the sealer would have written (which
        implies R1, R3 and R4 at once); the segment header, meta records, the
        first unsealed record and any line that does not match go through
        :meth:`record`, whose diagnostics are the reference.
        """
        # Long on purpose: the per-record loop of a verification, kept in one frame
        # with everything in locals (a call per record costs more than the hashing).
        seg = self._seg
        assert seg is not None
        size = 0
        tick = 1 << 20
        leaf_copy, link_copy, node_copy = _LEAF.copy, _LINK.copy, _NODE.copy
        join, hx, cmp = b"".join, hexlify, compare_digest
        mark = _META_MARK
        n_suffix = SEAL_SUFFIX_LEN + 1
        ncps = len(self.cps)
        stack = self.stack
        pop, push = stack.pop, stack.append
        prefix = b'{"seq":%d,"epoch":%d,'
        seq, link, mac = self.seq, self.link, self.mac
        ci, boundary, key = self.ci, self._boundary, self._mac
        fast = not (ci == ncps and self._unsealed_at is None)
        body = b""
        for raw in lines:
            s = len(raw) - n_suffix
            if fast and s > 0 and seg.line and raw.startswith(prefix % (seq, ci)):
                i = raw.find(b',"source":', 0, s)
                if not raw.startswith(mark, i + 1, s):
                    # Inlined for speed: chain.link.chain_step, the MAC of chain.link's
                    # check_record (R3/R4 as one comparison of the whole seal suffix) and
                    # merkle.append, with the chain in locals. Keep them in step.
                    body = raw[:s]
                    st = leaf_copy()
                    st.update(body)
                    leaf = st.digest()
                    st = link_copy()
                    st.update(link)
                    st.update(mac)
                    st.update(leaf)
                    new = st.digest()
                    if key is not None:
                        st = key.copy()
                        st.update(new)
                        tag = st.digest()
                        ok = cmp(
                            raw[s:], join((_LINK_OPEN, hx(new), _MAC_OPEN, hx(tag), _CLOSE_NL))
                        )
                    else:
                        tail = raw[s + 82 :]
                        tag_hex = tail[:64]
                        ok = (
                            cmp(raw[s : s + 82], join((_LINK_OPEN, hx(new), _MAC_OPEN)))
                            and tail[64:] == _CLOSE_NL
                            and len(tag_hex) == 64
                            and not tag_hex.translate(None, b"0123456789abcdef")
                        )
                        tag = unhexlify(tag_hex) if ok else b""
                    if ok:
                        node = leaf
                        k = seq
                        while k & 1:
                            st = node_copy()
                            st.update(pop())
                            st.update(node)
                            node = st.digest()
                            k >>= 1
                        push(node)
                        seq += 1
                        link, mac = new, tag
                        seg.line += 1
                        size += s + n_suffix
                        if seq == boundary or size >= tick:
                            self.seq, self.link, self.mac, self._last_body = seq, link, mac, body
                            if seq == boundary:
                                try:
                                    self._close_epochs()  # R6
                                except (IntegrityError, FormatError) as exc:
                                    self._locate(exc, seq - 1)
                                    raise
                                ci, boundary, key = self.ci, self._boundary, self._mac
                                fast = not (ci == ncps and self._unsealed_at is None)
                            if progress is not None and size >= tick:
                                progress(size)
                                tick = size + (1 << 20)
                        continue
            # the slow path: everything else, with full checks and diagnostics
            if body:
                self._last_body, body = body, b""
            self.seq, self.link, self.mac = seq, link, mac
            if raw[-1:] != b"\n":
                return size, len(raw)
            self.record(raw[:-1])
            size += len(raw)
            seq, link, mac = self.seq, self.link, self.mac
            ci, boundary, key = self.ci, self._boundary, self._mac
            fast = not (ci == ncps and self._unsealed_at is None)
        if body:
            self._last_body = body
        self.seq, self.link, self.mac = seq, link, mac
        return size, 0

    def _record(self, line: bytes, seg: _Segment) -> None:
        if seg.line == 1:
            self._check_header(line)  # R5: segment header names its place
        seq = self.seq  # (a retained archive's first header moves it to the cut)
        epoch = self.ci
        if epoch == len(self.cps) and self._unsealed_at is None:
            self._unsealed_at = self._where()
        body, link, mac, leaf = check_record(line, seq, epoch, self.link, self.mac, self._mac)
        i = body.find(b',"source":')
        if body.startswith(_META_MARK, i + 1):
            self._check_meta(line, seg)  # R7: recovery records account for what they cut
        merkle.append(self.stack, seq, leaf)  # the slow path; records() inlines this
        self.seq = seq + 1
        self.link = link
        self.mac = mac
        if self._first_body is None:
            self._first_body = body
        self._last_body = body
        self._close_epochs()

    def _check_header(self, line: bytes) -> None:
        seg = self._seg
        assert seg is not None
        obj = parse_record(line)
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

    def _resume(self, attrs: dict[str, Any], seg: _Segment) -> None:
        """Start a retained archive at its first segment's header (docs/FORMAT.md 16.2).

        The header states the chain state at the cut; it is trusted here and
        authenticated twice later: the next checkpoint's chain head, MAC head and
        Merkle root are computed from it (R6), and a sealed ``retention.deleted``
        record must state the same cut (F3).
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
                "prev_mac, merkle_range): segments were deleted",
                what=Failure.MISSING_SEGMENT,
                field="attrs.prev_segment",
            )
        if not self.cps or self.cps[-1].seq_end < first:
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
        self.seq = self.first_seq = seg.first_seq = first
        self.link, self.mac = bytes.fromhex(link), bytes.fromhex(mac)
        self.stack[:] = [bytes.fromhex(n) for n in rng]  # in place: records() aliases it
        self._cut = _Cut(
            prev, first, self.link, self.mac, tuple(self.stack), {**self._where(), "seq": first}
        )
        self._close_epochs()  # R6 at the cut, when an epoch ended exactly there

    def _check_meta(self, line: bytes, seg: _Segment) -> None:
        obj = parse_record(line)
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
            self._check_retention(attrs)

    def _before_cut(self, name: object) -> bool:
        """A segment name from before a retained archive's first segment (deleted)."""
        return (
            self._cut is not None
            and isinstance(name, str)
            and SEGMENT_NAME.fullmatch(name) is not None
            and name < self.segments[0].name
        )

    def _check_retention(self, attrs: dict[str, Any]) -> None:
        """R8: a deletion record is consistent with what it deleted (docs/FORMAT.md 16.3)."""
        name = attrs.get("segment")
        first, end = attrs.get("seq_first"), attrs.get("seq_end")
        link, mac, rng = attrs.get("last_link"), attrs.get("last_mac"), attrs.get("merkle_range")
        cp = attrs.get("checkpoint")

        def bad(why: str, field: str) -> IntegrityError:
            return IntegrityError(
                f"retention record for {name!r}: {why}", what=Failure.RETENTION, field=field
            )

        if not (isinstance(name, str) and SEGMENT_NAME.fullmatch(name)):
            raise bad("not a segment name", "attrs.segment")
        if not (type(first) is int and type(end) is int and 0 <= first < end <= self.seq):
            raise bad(
                f"seq range [{first}, {end}) is not a range of earlier records", "attrs.seq_end"
            )
        if not (isinstance(link, str) and _HEX32.fullmatch(link)):
            raise bad("last_link is not 64 lower-case hex digits", "attrs.last_link")
        if not (isinstance(mac, str) and _HEX32.fullmatch(mac)):
            raise bad("last_mac is not 64 lower-case hex digits", "attrs.last_mac")
        if not (
            isinstance(rng, list)
            and len(rng) == end.bit_count()
            and all(isinstance(n, str) and _HEX32.fullmatch(n) for n in rng)
        ):
            raise bad(
                f"merkle_range is not the compact range of {end} leaves", "attrs.merkle_range"
            )
        e = cp.get("epoch") if isinstance(cp, dict) else None
        if not (
            isinstance(cp, dict)
            and type(e) is int
            and 0 <= e < self.ci
            and self.cps[e].seq_end >= end
            and (e == 0 or self.cps[e - 1].seq_end < end)
            and cp.get("digest") == self.cps[e].digest.hex()
        ):
            raise bad(
                "does not name the checkpoint that sealed the deleted records before the "
                "deletion (epoch and digest)",
                "attrs.checkpoint",
            )
        stated = (end, link, mac, rng)
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
        self.retention.append(
            {
                "seq": self.seq,
                "segment": name,
                "seq_first": first,
                "seq_end": end,
                "policy": attrs.get("policy"),
            }
        )

    # ------------------------------------------------------------ end

    @property
    def pending(self) -> Sequence[Checkpoint]:
        """Checkpoints (checked, C1–C8) that cover records not fed yet."""
        return self.cps[self.ci :]

    def finish(self, *, partial: bool = False) -> Report:
        """F1–F3, and the report. ``partial``: the records of :attr:`pending`
        checkpoints are not expected (a source that holds them later), so F1 is
        not applied to them and the records after the last covered checkpoint
        count as unsealed (F2)."""
        cut = self._cut
        if cut is not None and not self._cut_accounted:  # F3: a gap only by retention
            raise IntegrityError(
                f"records 0..{cut.seq - 1} are missing (the archive starts after "
                f"{cut.prev_segment}) and no sealed retention record accounts for them: "
                "segments were deleted outside the retention policy",
                what=Failure.MISSING_SEGMENT,
                field="attrs.prev_segment",
                **cut.where,
            )
        if self.ci < len(self.cps) and not partial:  # F1: every checkpointed record is present
            cp = self.cps[self.ci]
            raise IntegrityError(
                f"archive truncated: checkpoint {cp.epoch} covers records up to seq "
                f"{cp.seq_end - 1}, but the records end at seq {self.seq - 1}",
                what=Failure.TRUNCATED,
                file=self._cp_names[self.ci],
                epoch=cp.epoch,
                seq=self.seq,
            )
        covered = self.cps[: self.ci] if partial else self.cps
        sealed = covered[-1].seq_end if covered else 0
        unsealed = self.seq - sealed
        if unsealed and self.require_sealed:  # F2: nothing after the last checkpoint
            raise IntegrityError(
                f"{unsealed} record(s) after the last checkpoint are not sealed by a signature",
                what=Failure.UNSEALED_TAIL,
                seq=sealed,
                **(self._unsealed_at or {}),
            )
        first = scan_int(self._first_body, b"time") if self._first_body else None
        last = scan_int(self._last_body, b"time") if self._last_body else None
        return Report(
            mode=self.mode,
            archive=self.identity.archive,
            records=self.seq - self.first_seq,
            sealed_records=max(0, sealed - self.first_seq),
            unsealed_records=unsealed,
            segments=len(self.segments),
            checkpoints=len(self.cps),
            first_time=first,
            last_time=last,
            anchor_epoch=self.anchor_epoch,
            recovered=tuple(self.recovered),
            warnings=tuple(self.warnings),
            first_seq=self.first_seq,
            retention=tuple(self.retention),
        )
