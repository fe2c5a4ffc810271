"""The writer's recovery on open: roll forward, cut a torn tail, finish an epoch.

A base class of :class:`~auditd_py.store.writer.ArchiveWriter` (its step 3 in
docs/FORMAT.md, "Writer"): after a crash, the records written after the last
state save are adopted into the chain again, the source positions and pending
deletions they carry are taken back, a torn last line is moved to
``quarantine/`` (the caller seals the returned record saying so), and an epoch
whose checkpoint was written but whose keys were not evolved is finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import META_SOURCE, Fields, h, parse_record, record_bytes
from auditd_py.chain.seal import Sealer
from auditd_py.clock import Clock
from auditd_py.errors import FormatError, IntegrityError, StateError
from auditd_py.record import Position
from auditd_py.store.bounded import CORRUPT
from auditd_py.store.compress import is_compressed, open_segment
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import Layout, write_atomic
from auditd_py.store.state import WriterState


class WriterRecovery:
    """Recovery on open; the attributes are the writer's (set by its constructor)."""

    layout: Layout
    sealer: Sealer
    clock: Clock
    worm: Worm
    positions: dict[str, Position]
    _saved: WriterState
    _retired: list[tuple[str, bytes]]
    _head_at: tuple[str, int] | None

    def _save_state(self) -> None:
        raise NotImplementedError  # the writer's

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
        with open_segment(path) as fh, _decompressible(name, path):
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
            self._retired.append((attrs["segment"], line))

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


@contextmanager
def _decompressible(name: str, path: Path) -> Iterator[None]:
    """A damaged compressed segment stops the writer with a StateError, not a traceback."""
    try:
        yield
    except CORRUPT as exc:
        raise StateError(
            f"compressed segment {name} cannot be decompressed ({exc}); refusing to write "
            "(run verify)",
            file=str(path),
        ) from exc
