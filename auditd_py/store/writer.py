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

:class:`ArchiveWriter` is assembled from base classes that each hold one of
these concerns: recovery on open (:mod:`auditd_py.store.recovery`), opening and
rotating segments (:mod:`auditd_py.store.rotation`) and deleting a segment under
retention (:mod:`auditd_py.store.retirement`); appending, epochs and the state
are here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from auditd_py.chain.checkpoint import GENESIS, Checkpoint
from auditd_py.chain.encoding import (
    META_SOURCE,
    Fields,
    genesis_link,
    h,
)
from auditd_py.chain.format import NS
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import PublicKey, VerifyKey, public_key_of
from auditd_py.chain.seal import Sealer, SealerState
from auditd_py.clock import Clock
from auditd_py.errors import (
    ArchiveError,
    ArchiveExistsError,
    DiskFullError,
    FormatError,
    StateError,
)
from auditd_py.record import Position
from auditd_py.store.immutable import OFF, Worm
from auditd_py.store.layout import (
    DIR_MODE,
    FILE_MODE,
    Layout,
    fsync_dir,
    secure_dirs,
    write_atomic,
    write_new,
)
from auditd_py.store.recovery import WriterRecovery
from auditd_py.store.retirement import WriterRetirement
from auditd_py.store.rotation import FULL_ERRNOS, WriterSegments, disk_full
from auditd_py.store.state import SavedState, StateFile, WriterState

RESERVED_EVENTS = frozenset({"segment.opened", "recovery.torn_tail", "retention.deleted"})
_SPILL = 4 << 20
"""Sealed bytes kept in memory before they are handed to the kernel between commits."""


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
    """keygen: a new archive, its genesis checkpoint, its sealing state and its two key
    files; the writer starts in epoch 1.

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
        layout.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for d in (layout.segments, layout.checkpoints, layout.quarantine):
            d.mkdir(mode=DIR_MODE, exist_ok=True)
        secure_dirs(layout)
        for p in (verify_key_path, public_key_path):
            p.parent.mkdir(parents=True, exist_ok=True)
        write_new(verify_key_path, VerifyKey(archive_id, mac_key, pk).to_bytes(), 0o600)
        write_new(public_key_path, PublicKey(archive_id, pk).to_bytes(), 0o644)
        # The genesis checkpoint (FORMAT.md 12.6): epoch 0 over the empty tree, signed
        # with s[0], which is then evolved away and never stored: only the checkpoint
        # chain from it (and so the identity it signs) can be extended, never replaced.
        sealer = Sealer(
            SealerState.genesis(archive_id, genesis_link(ident_bytes), mac_key, sign_seed, now_ns)
        )
        genesis = sealer.checkpoint(now_ns, GENESIS)
        write_new(layout.checkpoint(genesis.epoch), genesis.line + b"\n", FILE_MODE)
        sealer.evolve(genesis)
        StateFile.create(layout.state, SavedState(sealer.snapshot())).release()
        write_new(layout.identity, ident_bytes, FILE_MODE)
        fsync_dir(layout.root)
    except FileExistsError as exc:
        raise ArchiveExistsError(
            "already exists; refusing to overwrite", file=exc.filename
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot create: {exc.strerror}", file=exc.filename) from exc
    return ident


class ArchiveWriter(WriterSegments, WriterRecovery, WriterRetirement):
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
        self._retired: list[tuple[str, bytes]] = []
        """(segment, line) of the rolled-forward ``retention.deleted`` records."""
        self._history: tuple[int, bytes] | None = None
        """(count, digest) of the deletion history (docs/FORMAT.md 16.4), once loaded."""
        self._deletions_pending: list[bytes] = []
        """Deletion record lines sealed but not yet in ``deletions.jsonl``."""
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

    def track_cut(self, f: Fields) -> None:
        """A batch is sealed in parts and ``f`` ends one: track the position its raw
        attrs carry (a source puts ``pos`` on the batch's last record only)."""
        if f.pos is None and f.raw_attrs:
            self._track_raw(f)

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
            if exc.errno in FULL_ERRNOS:
                self.disk_full = True
                raise disk_full(exc, self.layout.segments / (self.segment or "")) from exc
            raise
        self.disk_full = False
        if sync and self.segment is not None:
            self.durable = (self.segment, self._offset)
        if sync and self._deletions_pending:
            self._sync_deletions()  # their records are durable now

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
            write_atomic(path, cp.line + b"\n", FILE_MODE)
        except OSError as exc:  # nothing changed: the epoch ends when it can be written
            if exc.errno in FULL_ERRNOS:
                self.disk_full = True
                raise disk_full(exc, path) from exc
            raise
        self.sealer.evolve(cp)
        self._save_state()
        self.checkpoints_written.append(cp)
        return cp

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
