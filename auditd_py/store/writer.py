"""Creating archives and appending sealed records to them.

The writer is the only code that changes an archive. Its order of operations is
what makes crashes harmless (docs/FORMAT.md, "Writer"):

1. records are appended to the open segment; ``flush(sync=True)`` fsyncs them;
2. an epoch ends: flush+fsync, write the signed checkpoint (temp, fsync,
   rename), then evolve the keys and save the state, which erases the old keys;
3. on open, the writer rolls the chain forward over records written after the
   last state save, cuts a torn last line into ``quarantine/`` and seals a
   record saying so, finishes an epoch whose checkpoint was written but whose
   keys were not yet evolved, and starts a new segment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import (
    META_SOURCE,
    Fields,
    genesis_link,
    h,
    parse_record,
    record_bytes,
)
from auditd_py.chain.format import NS, SEGMENT_NAME, segment_name
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import PublicKey, VerifyKey, public_key_of
from auditd_py.chain.seal import Sealer, SealerState
from auditd_py.clock import Clock
from auditd_py.errors import (
    ArchiveError,
    ArchiveExistsError,
    DiskFullError,
    FormatError,
    IntegrityError,
    StateError,
)
from auditd_py.record import Position
from auditd_py.store.compress import is_compressed, open_segment
from auditd_py.store.immutable import OFF, Worm
from auditd_py.store.layout import (
    Layout,
    fsync_dir,
    write_atomic,
    write_new,
)
from auditd_py.store.segment import read_header
from auditd_py.store.state import SavedState, StateFile, WriterState

RESERVED_EVENTS = frozenset({"segment.opened", "recovery.torn_tail", "retention.deleted"})
_SPILL = 4 << 20
"""Sealed bytes kept in memory before they are handed to the kernel between commits."""
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(exc: OSError, path: object) -> DiskFullError:
    return DiskFullError(f"file system full: {exc.strerror}", file=str(path))


@dataclass(frozen=True, slots=True)
class EpochPolicy:
    """When an epoch ends: after ``interval_ns`` or ``max_records``, whichever first."""

    interval_ns: int = 15 * 60 * NS
    max_records: int | None = None


def create_archive(
    layout: Layout,
    verify_key_path: Path,
    public_key_path: Path,
    *,
    host: str | None,
    now_ns: int,
    random: bytes | None = None,
) -> Identity:
    """keygen: a new archive, its sealing state and its two key files.

    Refuses to overwrite any of them. ``random`` (64 bytes) is for test vectors.
    """
    for p in (layout.identity, layout.state / "sealing.state", verify_key_path, public_key_path):
        if p.exists():
            raise ArchiveExistsError("already exists; refusing to overwrite", file=str(p))
    if layout.segments.exists() and any(layout.segments.iterdir()):
        raise ArchiveExistsError("already holds segments", file=str(layout.segments))
    rnd = random if random is not None else os.urandom(64)
    mac_key, sign_seed = rnd[:32], rnd[32:64]
    pk = public_key_of(sign_seed)
    archive_id = str(uuid.UUID(bytes=h(b"\x09", rnd)[:16], version=4))
    ident = Identity(archive_id, host or socket.gethostname(), now_ns, pk)
    ident_bytes = ident.to_bytes()
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        for d in (layout.segments, layout.checkpoints, layout.quarantine):
            d.mkdir(exist_ok=True)
        for p in (verify_key_path, public_key_path):
            p.parent.mkdir(parents=True, exist_ok=True)
        write_new(verify_key_path, VerifyKey(archive_id, mac_key, pk).to_bytes(), 0o600)
        write_new(public_key_path, PublicKey(archive_id, pk).to_bytes(), 0o644)
        state = SealerState.genesis(
            archive_id, genesis_link(ident_bytes), mac_key, sign_seed, now_ns
        )
        StateFile.create(layout.state, SavedState(state)).release()
        write_new(layout.identity, ident_bytes, 0o644)
        fsync_dir(layout.root)
    except FileExistsError as exc:
        raise ArchiveExistsError(
            "already exists; refusing to overwrite", file=exc.filename
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot create: {exc.strerror}", file=exc.filename) from exc
    return ident


class ArchiveWriter:
    """Appends records to an archive; exactly one per archive at a time (locked)."""

    def __init__(
        self,
        layout: Layout,
        identity: Identity,
        statefile: StateFile,
        sealer: Sealer,
        clock: Clock,
        policy: EpochPolicy,
        worm: Worm = OFF,
        saved: WriterState | None = None,
    ) -> None:
        self.layout = layout
        self.worm = worm
        """Whether segments are made append-only (open) and immutable (closed)."""
        self.identity = identity
        self._statefile = statefile
        self.sealer = sealer
        self.clock = clock
        self.policy = policy
        self._fd: int | None = None
        self._pending = bytearray()
        """Sealed bytes not yet written to the open segment (see :meth:`flush`)."""
        self.disk_full = False
        """The last write was refused for lack of space (cleared by a successful flush)."""
        self.durable: tuple[str, int] | None = None
        """(segment, offset) up to which records are fsynced: readers that must never see
        a record a crash could still take back (forwarders) stop there."""
        self.segment: str | None = None
        self._offset = 0
        self._head_at: tuple[str, int] | None = None
        self.segment_opened_ns = 0
        """The clock's time when the open segment was created (for rotation by age)."""
        self.segment_first_epoch = 0
        """The epoch the open segment started in (for rotation by epochs spanned)."""
        self.checkpoints_written: list[Checkpoint] = []
        self._retired: list[str] = []
        """Segments that rolled-forward ``retention.deleted`` records name."""
        self._saved = saved if saved is not None else WriterState()
        """The writer's part of the state as last loaded or saved (plus the segment number)."""
        self.positions: dict[str, Position] = dict(self._saved.positions or {})

    # ------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        layout: Layout,
        clock: Clock,
        policy: EpochPolicy | None = None,
        *,
        worm: Worm = OFF,
    ) -> ArchiveWriter:
        ident_bytes = layout.read_identity()
        identity = Identity.from_bytes(ident_bytes, file=str(layout.identity))
        statefile, state = StateFile.open(layout.state)
        try:
            if state.sealer.archive != identity.archive:
                raise StateError(
                    f"sealing state belongs to archive {state.sealer.archive}, "
                    f"not {identity.archive}",
                    file=str(statefile.path),
                )
            w = cls(
                layout,
                identity,
                statefile,
                Sealer(state.sealer),
                clock,
                policy or EpochPolicy(),
                worm,
                state.writer,
            )
            notes = w._recover()
            w._complete_deletions(w._retired)
            w._open_segment()
            for f in notes:
                w._seal(f)
            w.flush(sync=True)  # the header is durable: so is everything before it
        except BaseException:
            statefile.release()
            raise
        return w

    def _recover(self) -> list[Fields]:
        """Roll forward over records sealed after the last state save."""
        s = self.sealer
        notes: list[Fields] = []
        names = self.layout.segment_names()
        start_seg = self._saved.segment
        start_off = self._saved.offset
        if start_seg is not None:
            if start_seg not in names:
                raise StateError(
                    f"segment {start_seg} named by the sealing state is missing",
                    file=str(self.layout.segments),
                )
            names = names[names.index(start_seg) :]
        for i, name in enumerate(names):
            path = self.layout.segment_path(name)
            last = i == len(names) - 1
            off = start_off if (i == 0 and start_seg is not None) else 0
            if is_compressed(path):
                # closed before it was compressed: only rolled over, never cut
                self._roll_compressed(name, path, off)
                continue
            size = path.stat().st_size
            if size < off:
                raise StateError(
                    f"segment {name} is {size} bytes, but {off} bytes of it were sealed: "
                    "sealed records were removed (run verify)",
                    file=str(path),
                )
            with open(path, "rb") as fh:
                fh.seek(off)
                pos = off
                for raw in fh:
                    complete = raw.endswith(b"\n")
                    if complete:
                        try:
                            s.adopt(raw[:-1])
                            pos += len(raw)
                            self._rolled(raw)
                            continue
                        except (IntegrityError, FormatError) as exc:
                            bad = f"does not continue the chain ({exc.message})"
                    else:
                        bad = "is torn (no final newline)"
                    if not last:
                        raise StateError(
                            f"line at offset {pos} {bad}, and later segments exist; "
                            "refusing to write (run verify)",
                            file=str(path),
                        )
                    notes.append(self._quarantine(path, pos, size, bad))
                    break
            self._head_at = (name, path.stat().st_size)
        self._finish_pending_epoch()
        return notes

    def _roll_compressed(self, name: str, path: Path, off: int) -> None:
        """Roll forward over a compressed (hence closed and complete) segment."""
        s = self.sealer
        pos = 0
        with open_segment(path) as fh:
            for raw in fh:
                if pos < off:
                    pos += len(raw)
                    continue
                pos += len(raw)
                if not raw.endswith(b"\n"):
                    raise StateError(
                        f"compressed segment {name} ends with a torn line; refusing to write "
                        "(run verify)",
                        file=str(path),
                    )
                try:
                    s.adopt(raw[:-1])
                except (IntegrityError, FormatError) as exc:
                    raise StateError(
                        f"a line of compressed segment {name} does not continue the chain "
                        f"({exc.message}); refusing to write (run verify)",
                        file=str(path),
                    ) from exc
                self._rolled(raw)
        if pos < off:
            raise StateError(
                f"segment {name} holds {pos} bytes, but {off} bytes of it were sealed: "
                "sealed records were removed (run verify)",
                file=str(path),
            )
        self._head_at = (name, pos)

    def _rolled(self, raw: bytes) -> None:
        """What a rolled-forward line (with its newline) tells: positions, deletions."""
        if b'"pos":' in raw or b'"forget":' in raw:
            self._track_line(raw[:-1])
        if b'"retention.deleted"' in raw:
            self._note_retired(raw[:-1])

    def _note_retired(self, line: bytes) -> None:
        obj = parse_record(line)
        attrs = obj.get("attrs")
        if (
            obj.get("source") == META_SOURCE
            and obj.get("event") == "retention.deleted"
            and isinstance(attrs, dict)
            and isinstance(attrs.get("segment"), str)
        ):
            self._retired.append(attrs["segment"])

    def _track_line(self, line: bytes) -> None:
        """Take the source position out of a recovered record."""
        obj = parse_record(line)
        attrs = obj.get("attrs")
        if not isinstance(attrs, dict):
            return
        if isinstance(attrs.get("pos"), dict):
            pos = attrs["pos"]
            if isinstance(pos.get("k"), str):
                self.positions[pos["k"]] = Position(pos, record_bytes(obj)[-32:])
        elif isinstance(attrs.get("forget"), str) and obj.get("source") == META_SOURCE:
            self.positions.pop(attrs["forget"], None)

    def _quarantine(self, path: Path, pos: int, size: int, why: str) -> Fields:
        """Move the bytes after ``pos`` to quarantine/ and cut the segment there."""
        with open(path, "rb") as fh:
            fh.seek(pos)
            tail = fh.read()
        qname = f"{path.name}.{pos}.tail"
        write_atomic(self.layout.quarantine / qname, tail, 0o600)
        self.worm.release(path)  # append-only (chattr +a) while it was open; made +i on reopen
        with open(path, "r+b") as fh:
            fh.truncate(pos)
            os.fsync(fh.fileno())
        return Fields(
            time_ns=self.clock.now_ns(),
            source=META_SOURCE,
            message=(
                f"recovered segment {path.name}: cut {len(tail)} bytes at offset {pos} "
                f"that {why.split(' (', maxsplit=1)[0]}; kept in quarantine/{qname}"
            ).encode(),
            event="recovery.torn_tail",
            attrs={
                "segment": path.name,
                "offset": pos,
                "length": len(tail),
                "digest": h(b"\x0a", tail).hex(),
                "reason": why,
                "quarantine": f"quarantine/{qname}",
            },
        )

    def _finish_pending_epoch(self) -> None:
        """A checkpoint written before a crash whose key evolution did not happen."""
        s = self.sealer
        path = self.layout.checkpoint(s.epoch)
        if not path.exists():
            return
        cp = Checkpoint.from_line(path.read_bytes(), file=str(path))
        if cp.seq_end != s.seq or cp.chain_head != s.link or cp.mac_head != s.mac:
            raise StateError(
                f"checkpoint {cp.epoch} exists but does not match the records on disk",
                file=str(path),
            )
        s.evolve(cp)
        self._save_state()

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
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            if exc.errno in _FULL:
                raise _disk_full(exc, path) from exc
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

    def _seal(self, f: Fields) -> int:
        assert self._fd is not None
        line = self.sealer.seal(f)
        self._pending += line
        self._offset += len(line)
        self._track(f)
        return self.sealer.seq - 1

    def _track(self, f: Fields) -> None:
        """The source position a sealed record carries (or the one it tells to forget)."""
        attrs = f.attrs
        if f.pos is not None:
            self.positions[f.pos["k"]] = Position(f.pos, f.message[-32:])
        elif attrs:
            if "pos" in attrs:
                pos = attrs["pos"]
                self.positions[pos["k"]] = Position(pos, f.message[-32:])
            elif "forget" in attrs:
                self.positions.pop(str(attrs["forget"]), None)

    def _track_raw(self, f: Fields) -> None:
        try:
            pos = orjson.loads(f.raw_attrs or b"{}").get("pos")
        except orjson.JSONDecodeError:
            return
        if isinstance(pos, dict) and isinstance(pos.get("k"), str):
            self.positions[pos["k"]] = Position(pos, f.message[-32:])

    @property
    def offset(self) -> int:
        """Bytes written to the open segment so far."""
        return self._offset

    def forget(self, key: str) -> None:
        """Drop a position the source no longer needs (a file let go)."""
        self.positions.pop(key, None)

    def append(self, f: Fields) -> int:
        """Seal one record (ending the epoch first if it is due); returns its seq.

        The record-count limit is checked on every record, and so is the record's
        own time against the end of the epoch; the clock is read only when one of
        them says the epoch may be over (and, by callers that seal in batches,
        between batches: a source may stamp records with old times).
        """
        if f.source == META_SOURCE:
            raise FormatError(f"source name {META_SOURCE!r} is reserved", field="source")
        s = self.sealer
        limit = self.policy.max_records
        if f.time_ns - s.epoch_start >= self.policy.interval_ns or (
            limit is not None and s.seq - s.epoch_first_seq >= limit
        ):
            self._end_epoch_if_due()
        return self._seal(f)

    def append_many(self, batch: Sequence[Fields]) -> int:
        """Seal a batch of data records (the daemon's path): one write per epoch run.

        Same records, in the same order, as :meth:`append` of each; an epoch that
        falls due inside the batch is ended between the two records around it.
        """
        s = self.sealer
        assert self._fd is not None
        pending = self._pending
        for f in batch:
            if f.source == META_SOURCE:
                raise FormatError(f"source name {META_SOURCE!r} is reserved", field="source")
        i = 0
        n = len(batch)
        while i < n:
            limit = self.policy.max_records
            lines, j = s.seal_many(
                batch,
                i,
                s.epoch_start + self.policy.interval_ns,
                s.epoch_first_seq + limit if limit is not None else None,
            )
            pending += lines
            self._offset += len(lines)
            track = self._track
            for k in range(i, j):
                f = batch[k]
                if f.pos is not None or f.attrs:
                    track(f)
            if i < j < n and batch[j - 1].pos is None and batch[j - 1].raw_attrs:
                # The epoch may end inside a source's batch, whose position rides on its
                # last record only: take it from the last record sealed before the end.
                self._track_raw(batch[j - 1])
            if j < n and self._end_epoch_if_due() is None:
                self._seal(batch[j])  # due by the record's time only: not by the clock's
                j += 1
            i = j
        if len(pending) >= _SPILL:
            self._spill()
        return n

    def append_meta(self, event: str, message: str, attrs: dict[str, object]) -> int:
        """Seal one of the daemon's own events (source ``auditd-py``)."""
        if event in RESERVED_EVENTS:
            raise FormatError(f"event {event!r} is written by the archive itself", field="event")
        self._end_epoch_if_due()
        return self._seal(
            Fields(self.clock.now_ns(), META_SOURCE, message.encode(), event, dict(attrs))
        )

    def _end_epoch_if_due(self) -> Checkpoint | None:
        """:meth:`maybe_end_epoch` inside an append: a full disk only postpones the end.

        The records are sealed into the current epoch instead (an epoch may run
        longer than its interval); the caller's next :meth:`flush` reports the
        full disk. Nothing taken from a source is dropped on the way.
        """
        if self.disk_full:
            return None
        try:
            return self.maybe_end_epoch()
        except DiskFullError:
            return None

    def maybe_end_epoch(self) -> Checkpoint | None:
        s = self.sealer
        now = self.clock.now_ns()
        if now - s.epoch_start >= self.policy.interval_ns:
            return self.end_epoch("interval")
        if self.policy.max_records is not None and s.epoch_records >= self.policy.max_records:
            return self.end_epoch("records")
        return None

    def flush(self, *, sync: bool = True) -> None:
        """Write the sealed bytes kept in memory, and fsync them with ``sync``.

        On a full disk this raises :class:`DiskFullError` and keeps every byte
        that was not written: part of a line may have reached the file, and the
        next ``flush`` continues from exactly there, so the segment ends up
        byte-identical to an uninterrupted write (and a crash meanwhile leaves a
        torn tail that recovery quarantines, like any crash).
        """
        fd = self._fd
        if fd is None:
            return
        try:
            while self._pending:
                n = os.write(fd, self._pending)
                del self._pending[:n]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            if exc.errno in _FULL:
                self.disk_full = True
                raise _disk_full(exc, self.layout.segments / (self.segment or "")) from exc
            raise
        self.disk_full = False
        if sync and self.segment is not None:
            self.durable = (self.segment, self._offset)

    def _spill(self) -> None:
        """Hand a large backlog to the kernel between commits; a full disk waits for flush."""
        with contextlib.suppress(DiskFullError):
            self.flush(sync=False)

    @property
    def unwritten(self) -> int:
        """Sealed bytes held in memory because the file system refused them."""
        return len(self._pending)

    def end_epoch(self, reason: str) -> Checkpoint:
        """Checkpoint, then evolve the keys and erase the old ones."""
        self.flush(sync=True)
        cp = self.sealer.checkpoint(self.clock.now_ns(), reason)
        path = self.layout.checkpoint(cp.epoch)
        try:
            write_atomic(path, cp.line + b"\n", 0o644)
        except OSError as exc:  # nothing changed: the epoch ends when it can be written
            if exc.errno in _FULL:
                self.disk_full = True
                raise _disk_full(exc, path) from exc
            raise
        self.sealer.evolve(cp)
        self._save_state()
        self.checkpoints_written.append(cp)
        return cp

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

    # ------------------------------------------------------------ retention

    def covering_checkpoint(self, seq_end: int) -> Checkpoint:
        """The first checkpoint whose range ends at or after ``seq_end`` (written already)."""
        lo, hi = 0, self.sealer.epoch  # epochs [0, epoch) have checkpoint files
        found: Checkpoint | None = None
        while lo < hi:
            mid = (lo + hi) // 2
            path = self.layout.checkpoint(mid)
            cp = Checkpoint.from_line(path.read_bytes(), file=str(path))
            if cp.seq_end >= seq_end:
                found, hi = cp, mid
            else:
                lo = mid + 1
        if found is None:
            raise ArchiveError(f"no checkpoint covers the records before seq {seq_end} yet")
        return found

    def retire_segment(self, name: str, *, policy: str, detail: str) -> dict[str, object]:
        """Delete the oldest segment under a retention policy (docs/FORMAT.md 16).

        First a ``retention.deleted`` record is sealed and made durable, naming the
        segment, its seq range, the chain state at the cut (which the next
        segment's header states too), the checkpoint that covered it and the
        policy; then the file is unlinked. A crash in between leaves the record
        and the segment: the next :meth:`open` completes the deletion.
        """
        names = self.layout.segment_names()
        if len(names) < 2 or names[0] != name or name == self.segment:
            raise ArchiveError(
                f"only the oldest closed segment can be deleted, not {name}",
                file=str(self.layout.segments),
            )
        path = self.layout.segment_path(name)
        head = read_header(path, name)
        nxt = read_header(self.layout.segment_path(names[1]), names[1])
        if not nxt.resumable or nxt.prev_segment != name or nxt.merkle_range is None:
            raise ArchiveError(
                f"{names[1]} does not state the chain state at the cut; {name} is kept",
                file=str(self.layout.segment_path(names[1])),
            )
        cp = self.covering_checkpoint(nxt.seq)
        size = path.stat().st_size
        if self._saved.segment == name:
            # The state must not name a segment that is gone, and the record below
            # must lie where the next writer rolls forward (it completes the deletion).
            self.flush(sync=True)
            self._save_state()
        attrs: dict[str, object] = {
            "segment": name,
            "file": path.name,
            "bytes": size,
            "seq_first": head.seq,
            "seq_end": nxt.seq,
            "last_link": nxt.prev_link,
            "last_mac": nxt.prev_mac,
            "merkle_range": list(nxt.merkle_range),
            "checkpoint": {"epoch": cp.epoch, "digest": cp.digest.hex()},
            "policy": policy,
            "reason": detail,
        }
        self._seal(
            Fields(
                time_ns=self.clock.now_ns(),
                source=META_SOURCE,
                message=(
                    f"retention deleted segment {name} (seq {head.seq}..{nxt.seq - 1}, "
                    f"sealed by checkpoint {cp.epoch}): {policy}: {detail}"
                ).encode(),
                event="retention.deleted",
                attrs=attrs,
            )
        )
        self.flush(sync=True)
        self._unlink_segment(name)
        brief = ("segment", "file", "bytes", "seq_first", "seq_end", "policy", "reason")
        return {**{k: attrs[k] for k in brief}, "checkpoint": cp.epoch}

    def _unlink_segment(self, name: str) -> None:
        """Remove every file of a segment (plain, compressed, a compression's temp)."""
        seg_dir = self.layout.segments
        for fname in (name, f"{name}.zst", f"{name}.gz", f".{name}.zst.tmp", f".{name}.gz.tmp"):
            p = seg_dir / fname
            if p.exists():
                self._release_flags(p)
                p.unlink(missing_ok=True)
        fsync_dir(seg_dir)

    def _release_flags(self, path: Path) -> None:
        """Lift append-only/immutable flags before a deletion (even if set by an earlier run)."""
        self.worm.release(path)

    def _complete_deletions(self, names: list[str]) -> None:
        """Finish deletions whose record was sealed before a crash (see retire_segment)."""
        present = self.layout.segment_names()
        for name in names:
            if name in present and name != present[-1]:
                self._unlink_segment(name)

    def _reopen(self, name: str) -> None:
        """Continue appending to ``name`` after a rotation could not create the next one."""
        path = self.layout.segment_path(name)
        self.worm.release(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.worm.append_only(path)
        self.segment = name
        self._offset = os.fstat(self._fd).st_size

    def _save_state(self) -> None:
        """Persist keys and chain head with the byte position the head is at."""
        at = (self.segment, self._offset) if self.segment is not None else self._head_at
        saved = self._saved
        if at is not None:
            saved = replace(saved, segment=at[0], offset=at[1])
        self._saved = replace(saved, positions=dict(self.positions))
        self._statefile.save(SavedState(self.sealer.snapshot(), self._saved))

    def close(self) -> Checkpoint:
        """End the epoch with a checkpoint, close the segment, release the lock."""
        try:
            cp = self.end_epoch("close")
            assert self._fd is not None
            os.close(self._fd)
            self._fd = None
            if self.segment is not None:
                self.worm.immutable(self.layout.segments / self.segment)  # chattr -a +i
            return cp
        finally:
            self._statefile.release()

    def abandon(self) -> None:
        """Release without a checkpoint (as a crash would), for error paths."""
        if self._fd is not None:
            try:
                self.flush(sync=False)
            except ArchiveError:
                pass  # a full disk: what could not be written is lost, as in a crash
            finally:
                os.close(self._fd)
                self._fd = None
        self._statefile.release()
