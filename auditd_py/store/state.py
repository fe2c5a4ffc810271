"""The sealing state file: current epoch keys and chain head, erased forward.

``sealing.state`` has two fixed-size slots. A save writes the new state into
the slot not holding the newest one and fsyncs it, then overwrites the other
slot (which holds the previous epoch's keys) with zeros and fsyncs again. A
crash between the two leaves both slots valid; the loader takes the one with
the higher counter and wipes the other before anything else happens. The file
is never renamed or recreated, so the bytes of an old key are overwritten in
place rather than left in an unlinked inode. See docs/THREAT_MODEL.md for what
that does and does not guarantee on journaling file systems and SSDs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from auditd_py.chain.encoding import DIGEST_SIZE, h
from auditd_py.chain.seal import SealerState
from auditd_py.errors import ArchiveLockedError, StateError
from auditd_py.record import Position

STATE_FILE = "sealing.state"
LOCK_FILE = "lock"
SLOT = 262144  # room for the sealed positions of ~1,000 tailed files; more spill to a file
POSITIONS_FILE = "positions-{:016d}.json"
"""Sealed source positions too many for a slot, named by the state counter that uses them."""
_POS_TAG = b"\x11"
MAGIC = b"ADPSTAT1"
_HDR = struct.Struct(">8sQI")  # magic, counter, payload length
_TAG = b"\x10"


@dataclass(frozen=True, slots=True)
class WriterState:
    """The writer's part of the state: where the sealed bytes end, and the sources' places.

    Stored as the ``extra`` object of the state file (its keys below, each only
    once it has a value, so that the file reads as it always did).
    """

    last_segment_no: int | None = None
    """The highest segment number ever opened (never reused, even after deletion)."""
    segment: str | None = None
    """The segment the chain head is in, at the last save (``None``: none yet)."""
    offset: int = 0
    """Bytes of ``segment`` sealed at the last save."""
    positions: Mapping[str, Position] | None = None
    """The sealed source positions by key (``None``: never saved)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.last_segment_no is not None:
            out["last_segment_no"] = self.last_segment_no
        if self.segment is not None:
            out["segment"] = self.segment
            out["offset"] = self.offset
        if self.positions is not None:
            out["positions"] = {
                k: {"pos": dict(p.pos), "tail": p.tail.hex()} for k, p in self.positions.items()
            }
        return out

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> WriterState:
        """Read ``extra`` as any version wrote it (keys in any order, any of them absent)."""
        last = o.get("last_segment_no")
        positions = o.get("positions")
        return cls(
            last_segment_no=int(last) if last is not None else None,
            segment=o.get("segment"),
            offset=int(o.get("offset", 0)),
            positions=(
                {k: Position(v["pos"], bytes.fromhex(v["tail"])) for k, v in positions.items()}
                if positions is not None
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class SavedState:
    """What the state file holds: the sealer's chain and keys, and the writer's places."""

    sealer: SealerState
    writer: WriterState = field(default_factory=WriterState)


def _encode(saved: SavedState, spilled: Mapping[str, str] | None = None) -> bytes:
    """The slot's payload; ``spilled``: where the positions are instead (see ``StateFile``)."""
    state = saved.sealer
    extra = saved.writer.to_json()
    if spilled is not None:
        extra.pop("positions", None)
        extra["positions_file"] = dict(spilled)
    return orjson.dumps(
        {
            "archive": state.archive,
            "epoch": state.epoch,
            "epoch_start": state.epoch_start,
            "epoch_first_seq": state.epoch_first_seq,
            "mac_key": state.mac_key.hex(),
            "sign_seed": state.sign_seed.hex(),
            "seq": state.seq,
            "link": state.link.hex(),
            "mac": state.mac.hex(),
            "stack": [x.hex() for x in state.stack],
            "prev_checkpoint": state.prev_checkpoint.hex(),
            "extra": extra,
        }
    )


def _decode(payload: bytes) -> SavedState:
    o: dict[str, Any] = orjson.loads(payload)
    sealer = SealerState(
        archive=o["archive"],
        epoch=o["epoch"],
        epoch_start=o["epoch_start"],
        epoch_first_seq=o["epoch_first_seq"],
        mac_key=bytes.fromhex(o["mac_key"]),
        sign_seed=bytes.fromhex(o["sign_seed"]),
        seq=o["seq"],
        link=bytes.fromhex(o["link"]),
        mac=bytes.fromhex(o["mac"]),
        stack=tuple(bytes.fromhex(x) for x in o["stack"]),
        prev_checkpoint=bytes.fromhex(o["prev_checkpoint"]),
    )
    return SavedState(sealer, WriterState.from_json(o.get("extra", {})))


def _slot(counter: int, payload: bytes) -> bytes:
    data = _HDR.pack(MAGIC, counter, len(payload)) + payload
    data += h(_TAG, data)
    if len(data) > SLOT:
        raise StateError(f"sealing state too large ({len(data)} bytes)")
    return data + bytes(SLOT - len(data))


def _parse_slot(raw: bytes) -> tuple[int, bytes] | None:
    if len(raw) < _HDR.size or not raw.startswith(MAGIC):
        return None
    _, counter, n = _HDR.unpack_from(raw)
    end = _HDR.size + n
    if end + DIGEST_SIZE > len(raw) or h(_TAG, raw[:end]) != raw[end : end + DIGEST_SIZE]:
        return None
    return counter, raw[_HDR.size : end]


class StateFile:
    """The sealing state of one archive, held under an exclusive lock."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / STATE_FILE
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._counter = 0
        self._slot = 0

    # -- lifecycle

    @classmethod
    def create(cls, directory: Path, state: SavedState) -> StateFile:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        sf = cls(directory)
        sf._lock()
        fd = os.open(sf.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        sf._fd = fd
        os.pwrite(fd, bytes(2 * SLOT), 0)
        sf._counter, sf._slot = 0, 1
        sf.save(state)
        return sf

    @classmethod
    def open(cls, directory: Path) -> tuple[StateFile, SavedState]:
        sf = cls(directory)
        if not sf.path.exists():
            raise StateError(
                "no sealing state here (was the archive created with keygen, "
                "and is --state right?)",
                file=str(sf.path),
            )
        st = directory.stat()
        if st.st_mode & 0o077:
            raise StateError(
                f"state directory permissions {stat.S_IMODE(st.st_mode):04o} are too open; "
                "run: chmod 700 " + str(directory),
                file=str(directory),
            )
        sf._lock()
        try:
            fd = os.open(sf.path, os.O_RDWR)
        except OSError as exc:
            sf.release()
            raise StateError(f"cannot open: {exc.strerror}", file=str(sf.path)) from exc
        sf._fd = fd
        raw = os.pread(fd, 2 * SLOT, 0)
        slots = [_parse_slot(raw[:SLOT]), _parse_slot(raw[SLOT:])]
        valid = [(s[0], i, s[1]) for i, s in enumerate(slots) if s is not None]
        if not valid:
            sf.release()
            raise StateError("sealing state is corrupt (no valid slot)", file=str(sf.path))
        counter, idx, payload = max(valid)
        sf._counter, sf._slot = counter, idx
        if len(valid) == 2:  # a save was interrupted after writing the new slot
            sf._wipe(1 - idx)
        try:
            saved = _decode(payload)
            extra = orjson.loads(payload).get("extra", {})
            if "positions_file" in extra:
                saved = sf._unspill(saved, extra)
            return sf, saved
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
            sf.release()
            raise StateError(f"sealing state is malformed: {exc}", file=str(sf.path)) from exc

    def _lock(self) -> None:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ArchiveLockedError(
                "another process is sealing into this archive", file=str(self.dir / LOCK_FILE)
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    # -- saving

    def _wipe(self, idx: int) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, bytes(SLOT), idx * SLOT)
        os.fsync(self._fd)

    def save(self, state: SavedState) -> None:
        """Persist ``state`` and overwrite the previous one in place.

        Positions of more files than a slot holds go to a file of their own,
        written (and fsynced) before the slot that names it with its digest; the
        older positions files are removed only once that slot is saved: a crash
        at any point leaves the slot it ends with and the positions it names.
        """
        assert self._fd is not None
        new = 1 - self._slot
        self._counter += 1
        payload = _encode(state)
        spilled = None
        if _HDR.size + len(payload) + DIGEST_SIZE > SLOT and state.writer.positions:
            spilled = self._spill(state.writer)
            payload = _encode(state, spilled)
        os.pwrite(self._fd, _slot(self._counter, payload), new * SLOT)
        os.fsync(self._fd)
        old = self._slot
        self._slot = new
        self._wipe(old)
        self._prune(spilled["name"] if spilled is not None else None)

    def _spill(self, writer: WriterState) -> dict[str, str]:
        name = POSITIONS_FILE.format(self._counter)
        data = orjson.dumps(writer.to_json()["positions"])
        tmp = self.dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / name)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return {"name": name, "digest": h(_POS_TAG, data).hex()}

    def _prune(self, keep: str | None) -> None:
        """Remove positions files no slot names any more (and temp files of a crash)."""
        for n in os.listdir(self.dir):
            if n != keep and n.lstrip(".").startswith("positions-"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / n)

    def _unspill(self, saved: SavedState, extra: Mapping[str, Any]) -> SavedState:
        """The positions a slot names in a file of their own, checked against its digest."""
        ref = extra["positions_file"]
        name = str(ref["name"])
        if "/" in name or not name.startswith("positions-"):
            raise ValueError(f"bad positions file name {name!r}")
        data = (self.dir / name).read_bytes()
        if h(_POS_TAG, data).hex() != ref["digest"]:
            raise ValueError(f"{name} does not match the digest the state names")
        writer = WriterState.from_json({**saved.writer.to_json(), "positions": orjson.loads(data)})
        return replace(saved, writer=writer)
