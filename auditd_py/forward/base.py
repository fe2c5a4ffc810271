"""What every forwarder shares: what it reads, its cursor, and the sink protocol.

A forwarder owns a :class:`Cursor` (persisted with :func:`save_cursor`,
atomically, after the peer acknowledged) and reads the archive from it with
:class:`~auditd_py.forward.tail.SealedTail` or by closed segments and
checkpoint files. It raises :class:`ForwardError` for anything its peer did
wrong or could not do (a refused connection, a failed handshake, a 5xx): the
runner retries forever with capped exponential backoff and jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from auditd_py.errors import StateError
from auditd_py.store.layout import write_atomic


@dataclass(frozen=True, slots=True)
class Sealed:
    """One sealed record line, as read from the archive."""

    seq: int
    line: bytes
    """The record line without its newline: BODY ‖ SEAL (docs/FORMAT.md 8.1)."""
    segment: str
    """The logical segment name it is in."""
    end: int
    """The offset just after this line (and its newline) in the segment's plain bytes."""


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """The facts of the archive every forwarder sends along."""

    archive: str
    host: str
    environment: str
    identity: bytes
    """The bytes of archive.json (the genesis link depends on them)."""


@dataclass(slots=True)
class Cursor:
    """Where a forwarder is: everything before it is acknowledged by the peer.

    ``segment``/``offset``/``seq`` is the next record to send (``segment`` None:
    from the archive's first segment); ``checkpoint`` is the next checkpoint
    epoch to send; ``segments_done`` the last closed segment delivered whole
    (segment-oriented forwarders); ``extra`` is the forwarder's own.
    """

    archive: str
    segment: str | None = None
    offset: int = 0
    seq: int = 0
    checkpoint: int = 0
    segments_done: str | None = None
    identity_sent: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "archive": self.archive,
                "segment": self.segment,
                "offset": self.offset,
                "seq": self.seq,
                "checkpoint": self.checkpoint,
                "segments_done": self.segments_done,
                "identity_sent": self.identity_sent,
                "extra": self.extra,
            }
        )


def cursor_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"forward-{name}.cursor"


def load_cursor(path: Path, archive: str) -> Cursor:
    """The saved cursor, or a fresh one (from the archive's start) if there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Cursor(archive)
    try:
        obj = orjson.loads(raw)
        c = Cursor(
            archive=str(obj["archive"]),
            segment=obj.get("segment"),
            offset=int(obj.get("offset", 0)),
            seq=int(obj.get("seq", 0)),
            checkpoint=int(obj.get("checkpoint", 0)),
            segments_done=obj.get("segments_done"),
            identity_sent=bool(obj.get("identity_sent", False)),
            extra=dict(obj.get("extra") or {}),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateError(f"forwarder cursor is unreadable: {exc}", file=str(path)) from exc
    if c.archive != archive:
        raise StateError(
            f"forwarder cursor belongs to archive {c.archive}, not {archive}", file=str(path)
        )
    return c


def save_cursor(path: Path, cursor: Cursor) -> None:
    """Durably (temp file, fsync, rename, fsync dir): a crash keeps the old or the new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, cursor.to_json() + b"\n", 0o600)


__all__ = [
    "ArchiveInfo",
    "Cursor",
    "Sealed",
    "cursor_path",
    "load_cursor",
    "save_cursor",
]
