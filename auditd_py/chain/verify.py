"""Streaming verification of an archive (pure: the caller reads the files).

Checks are numbered as in docs/FORMAT.md section "Verification":

* G1, C1–C8 and G2 run over the checkpoints before any record is read (the
  genesis checkpoint exists and signs the identity file);
* R1–R7 run for each record line, in order;
* F3, F4, F1 and F2 run at the end.

The first failed check raises :class:`~auditd_py.errors.IntegrityError` (or
:class:`~auditd_py.errors.FormatError`) whose diagnostics name the file, the
line, the seq and what failed. Memory is constant in the number of records.
"""

from __future__ import annotations

import re
from binascii import hexlify, unhexlify
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any

from auditd_py.chain import merkle, speedups
from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.checkpoint_chain import (
    Failures,
    check_anchor,
    check_checkpoints,
    check_identity_signed,
)
from auditd_py.chain.deletions import DeletionHistory
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
    scan_int,
)
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import same
from auditd_py.chain.link import check_record
from auditd_py.chain.verify_all import KeepGoing
from auditd_py.chain.verify_meta import Cut, MetaChecks, SegmentRead
from auditd_py.errors import Failure, FormatError, IntegrityError

_HEX32 = re.compile(r"[0-9a-f]{64}")
_RUN = 4096  # lines handed to the compiled loop per call
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
    """Every deletion by retention since keygen, oldest first (docs/FORMAT.md 16.4)."""

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


def _chunks(lines: Iterable[bytes]) -> Iterator[list[bytes]]:
    """``lines`` in lists of up to ``_RUN`` lines.

    When reading fails (a damaged compressed segment), the lines read before the
    failure are checked first, as the line-by-line loop checks them, so that the
    first failure reported is the same.
    """
    chunk: list[bytes] = []
    add = chunk.append
    try:
        for raw in lines:
            add(raw)
            if len(chunk) == _RUN:
                yield chunk
                chunk = []
                add = chunk.append
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


class Verifier(KeepGoing, MetaChecks):
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
        deletions: bytes = b"",
        failures: Failures | None = None,
    ) -> None:
        """The identity, checkpoint (G1, C1–C8, G2) and anchor checks; ``failures``:
        ``verify --all`` (:class:`~auditd_py.chain.verify_all.KeepGoing`)."""
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
        self.failures = failures
        self.cps = check_checkpoints(self.identity, checkpoints, public_key, failures)  # G1, C1–8
        self._cp_names = [n for n, _ in checkpoints]
        self.gather(check_identity_signed, identity_bytes, self.cps[0], identity_file)  # G2
        self.anchor_epoch = (
            self.gather(check_anchor, self.identity, self.cps, self._cp_names, anchor)
            if anchor is not None
            else None
        )
        self.seq = 0
        self.link = genesis_link(identity_bytes)
        self.mac = ZERO
        self.stack: list[bytes] = []
        self.ci = 0  # index (= epoch) of the checkpoint that will cover the next record
        self.segments: list[SegmentRead] = []
        self._seg: SegmentRead | None = None
        self._first_body: bytes | None = None
        self._last_body: bytes | None = None
        self._unsealed_at: dict[str, Any] | None = None
        self._boundary = -1
        self.recovered: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.first_seq = 0
        self._cut = None
        self._cut_accounted = False
        self.history = DeletionHistory(deletions, self.cps)
        self._resync = self._skipped = False
        self.in_sync = True
        self._close_epochs()

    # ------------------------------------------------------------ epochs

    def begin_segment(self, name: str) -> None:
        self._seg = SegmentRead(name, first_seq=self.seq)
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
        The checks are those of :meth:`record`. Runs the compiled loop when it is
        active (:mod:`~auditd_py.chain.speedups`), else :meth:`_records_pure`.
        """
        loop = speedups.compiled()
        if loop is None:
            return self._records_pure(lines, progress)
        return _records_compiled(self, loop, lines, progress)

    def _records_pure(
        self, lines: Iterable[bytes], progress: Callable[[int], None] | None = None
    ) -> tuple[int, int]:
        """:meth:`records` in pure Python: the reference loop. An ordinary data record takes a
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

    def _record(self, line: bytes, seg: SegmentRead) -> None:
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

    # ------------------------------------------------------------ end

    @property
    def pending(self) -> Sequence[Checkpoint]:
        """Checkpoints (checked, C1–C8) that cover records not fed yet."""
        return self.cps[self.ci :]

    def _cut_pending(self, cut: Cut) -> bool:
        stated = (cut.seq, cut.link.hex(), cut.mac.hex(), [n.hex() for n in cut.stack])
        return self.history.states_cut(cut.prev_segment, stated)

    def finish(self, *, partial: bool = False) -> Report:
        """F1–F4, and the report. ``partial``: the records of :attr:`pending`
        checkpoints are not expected (a source that holds them later), so F1 is
        not applied to them, the records after the last covered checkpoint count
        as unsealed (F2), F4 is not applied, and F3 is pending when an entry of
        deletions.jsonl states the cut (its record is in the part not read)."""
        cut = self._cut
        pending = partial and self._cut_pending(cut) if cut is not None else False
        if cut is not None and not self._cut_accounted and not self._skipped and not pending:
            self.fail(  # F3
                IntegrityError(
                    f"records 0..{cut.seq - 1} are missing (the archive starts after "
                    f"{cut.prev_segment}) and no sealed retention record accounts for them: "
                    "segments were deleted outside the retention policy",
                    what=Failure.MISSING_SEGMENT,
                    field="attrs.prev_segment",
                    **cut.where,
                )
            )
        if not partial and not self._skipped:  # F4: deletions.jsonl holds only sealed
            self.gather(self.history.finish)  # deletions (records not read: left out)
        if self.ci < len(self.cps) and not partial and self.in_sync:  # F1: all records present
            cp = self.cps[self.ci]
            self.fail(
                IntegrityError(
                    f"archive truncated: checkpoint {cp.epoch} covers records up to seq "
                    f"{cp.seq_end - 1}, but the records end at seq {self.seq - 1}",
                    what=Failure.TRUNCATED,
                    file=self._cp_names[self.ci],
                    epoch=cp.epoch,
                    seq=self.seq,
                )
            )
        covered = self.cps[: self.ci] if partial else self.cps
        sealed = covered[-1].seq_end if covered else 0
        unsealed = self.seq - sealed
        if unsealed and self.require_sealed:  # F2: nothing after the last checkpoint
            self.fail(
                IntegrityError(
                    f"{unsealed} record(s) after the last checkpoint are not sealed by a signature",
                    what=Failure.UNSEALED_TAIL,
                    seq=sealed,
                    **(self._unsealed_at or {}),
                )
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
            retention=tuple(d.as_dict() for d in self.history.deletions),
        )


def _records_compiled(
    v: Verifier,
    loop: speedups.Loop,
    lines: Iterable[bytes],
    progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """:meth:`Verifier.records` with runs of ordinary data records checked by ``loop``.

    The compiled loop accepts exactly the lines the fast path of
    :meth:`Verifier._records_pure` accepts and stops at any other, which then goes
    through :meth:`Verifier.record` (the reference, with its diagnostics); it also stops
    at each checkpoint boundary so that R6 runs here.
    """
    seg = v._seg
    assert seg is not None
    size = 0
    tick = 1 << 20
    ncps = len(v.cps)
    for chunk in _chunks(lines):
        i, n = 0, len(chunk)
        while i < n:
            if (
                seg.line
                and (v.ci < ncps or v._unsealed_at is not None)
                and len(v.stack) == v.seq.bit_count()
            ):
                j, seq, v.link, v.mac, done = loop.verify_run(
                    chunk, i, v.seq, v.ci, v.link, v.mac,
                    v._mac_key, v.stack, v._boundary,
                )  # fmt: skip
                if j > i:
                    v.seq = seq
                    seg.line += j - i
                    size += done
                    v._last_body = chunk[j - 1][: -SEAL_SUFFIX_LEN - 1]
                    i = j
                    if seq == v._boundary:
                        try:
                            v._close_epochs()  # R6
                        except (IntegrityError, FormatError) as exc:
                            v._locate(exc, seq - 1)
                            raise
                    continue
            raw = chunk[i]  # the slow path: full checks and diagnostics
            if raw[-1:] != b"\n":
                return size, len(raw)
            v.record(raw[:-1])
            size += len(raw)
            i += 1
        if progress is not None and size >= tick:
            progress(size)
            tick = size + (1 << 20)
    return size, 0
