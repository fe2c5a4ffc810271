"""Forwarding to S3 with Object Lock: the identity, every checkpoint, closed segments.

Each :meth:`S3Forwarder.step` uploads, in this order, what is ready:

1. ``archive.json``, once;
2. every checkpoint file not uploaded yet, as soon as it exists (they are the
   external anchor that makes a truncation on the host detectable);
3. the oldest closed segment not uploaded yet (closed: a later segment
   exists), as the file is on disk: ``seg-N.jsonl``, or ``seg-N.jsonl.zst`` /
   ``.gz`` with the suffix kept in the key.

Keys: ``<prefix>/<environment>/<host>/<archive-id>/`` + ``archive.json``,
``checkpoints/cp-N.json``, ``segments/seg-N.jsonl[.zst|.gz]``.

Every PUT carries ``x-amz-object-lock-mode: COMPLIANCE`` with a retain-until
date of now + ``retain_for``, ``Content-MD5`` and ``x-amz-checksum-sha256`` (the
server refuses bytes that do not match), and ``If-None-Match: *``: it never
replaces an object. The cursor is saved (atomically) after each acknowledged
PUT. A crash between the PUT and the save repeats the PUT on the next run; the
server answers 412 (the key exists), the forwarder compares the existing
object's oldest version with the file (SHA-256, else ETag = MD5, and size):
equal, it is the same delivery and counts as done; different, someone put
other bytes under the key first: that is reported (``forward.conflict``) and
retried, never overwritten or skipped. A server that ignores ``If-None-Match``
stores a second version with the same bytes, which readers never see (they read
the oldest version).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from auditd_py.clock import Clock
from auditd_py.config import S3Forward
from auditd_py.contracts import Meta
from auditd_py.errors import ArchiveError, ForwardError
from auditd_py.forward.base import (
    ArchiveInfo,
    Cursor,
    cursor_path,
    load_cursor,
    save_cursor,
)
from auditd_py.forward.s3_upload import Moved, ObjectLockUploader
from auditd_py.store.compress import is_compressed
from auditd_py.store.layout import CHECKPOINT_RE, CHECKPOINTS, IDENTITY, SEGMENTS, Layout
from auditd_py.store.s3 import S3Location, archive_location
from auditd_py.store.segment import read_header

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Forwarder:
    """Implements :class:`~auditd_py.forward.base.Forwarder` for an S3 bucket with Object Lock.

    ``compress_grace_ns``: when the daemon compresses closed segments, a plain
    closed segment is about to be replaced by its (much smaller) compressed
    file; the forwarder waits up to this long after the segment closed (the next
    segment's header time) before it uploads the plain file anyway. 0 (the
    default) uploads whatever is on disk at once. Checkpoints never wait.
    """

    kind = "s3"

    def __init__(
        self,
        settings: S3Forward,
        layout: Layout,
        info: ArchiveInfo,
        state_dir: Path,
        clock: Clock,
        meta: Meta,
        *,
        compress_grace_ns: int = 0,
        client: S3Client | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.layout = layout
        self.info = info
        self.clock = clock
        self.meta = meta
        self.compress_grace_ns = compress_grace_ns
        self.loc: S3Location = archive_location(
            settings.bucket, settings.prefix, info.environment, info.host, info.archive
        )
        self._uploader = ObjectLockUploader(settings, self.loc, clock, meta, client)
        self._path = cursor_path(state_dir, self.name)
        self.cursor: Cursor = load_cursor(self._path, info.archive)
        self._first_seq: dict[str, int] = {}
        """Header seq of each segment (logical name), read once."""
        self._opened_at: dict[str, int] = {}
        """Header time of each segment: when the segment before it closed."""
        self._step_lock = threading.Lock()

    # ------------------------------------------------------------ the protocol

    @property
    def client(self) -> S3Client:
        return self._uploader.client

    @property
    def uploads(self) -> int:
        """Objects acknowledged (duplicates included)."""
        return self._uploader.uploads

    @property
    def uploaded_bytes(self) -> int:
        return self._uploader.uploaded_bytes

    @property
    def duplicates(self) -> int:
        """Re-uploads found already in the bucket with the same bytes (after a crash)."""
        return self._uploader.duplicates

    def step(self) -> int:
        """Upload the identity, pending checkpoints and the oldest pending closed segment."""
        with self._step_lock:
            done = 0
            self._uploader.check_bucket()
            c = self.cursor
            if not c.identity_sent:
                self._uploader.put(IDENTITY, self.layout.identity)
                c.identity_sent = True
                self._save()
                done += 1
            while True:
                path = self.layout.checkpoint(c.checkpoint)
                if not path.exists():
                    break
                self._uploader.put(f"{CHECKPOINTS}/{path.name}", path)
                c.checkpoint += 1
                self._save()
                done += 1
            pending, newest = self._pending_segments()
            if pending and self._ready(pending[0], newest):
                name = pending[0]
                self._put_segment(name)
                c.segments_done = name
                self._save()
                done += 1
            return done

    def floor(self) -> int | None:
        """First seq of the oldest closed segment not uploaded yet; None: nothing pending."""
        pending, _ = self._pending_segments()
        if not pending:
            return None
        try:
            return self._seq_of(pending[0])
        except (ArchiveError, OSError):
            return 0  # its header cannot be read now: hold every segment back

    def lag(self) -> dict[str, int]:
        pending, newest = self._pending_segments()
        cps = self._checkpoints_pending()
        records = 0
        if pending and newest is not None:
            try:
                records = max(0, self._seq_of(newest) - self._seq_of(pending[0]))
            except ArchiveError:
                records = 0  # the open segment has no header yet: counted next time
        return {"segments": len(pending), "checkpoints": cps, "records": records}

    def close(self) -> None:
        self._uploader.close()

    # ------------------------------------------------------------ what is pending

    def _pending_segments(self) -> tuple[list[str], str | None]:
        """Closed segments not uploaded (oldest first), and the newest (open) segment."""
        names = self.layout.segment_names()
        if not names:
            return [], None
        done = self.cursor.segments_done
        closed = names[:-1]
        return [n for n in closed if done is None or n > done], names[-1]

    def _checkpoints_pending(self) -> int:
        try:
            names = os.listdir(self.layout.checkpoints)
        except OSError:
            return 0
        return sum(
            1
            for n in names
            if (m := CHECKPOINT_RE.fullmatch(n)) and int(m.group(1)) >= self.cursor.checkpoint
        )

    def _seq_of(self, name: str) -> int:
        seq = self._first_seq.get(name)
        if seq is None:
            head = read_header(self.layout.segment_path(name), name)
            seq = self._first_seq[name] = head.seq
            self._opened_at[name] = head.time_ns
        return seq

    def _ready(self, name: str, newest: str | None) -> bool:
        """False while a plain closed segment may still be replaced by its compressed file."""
        if self.compress_grace_ns <= 0 or newest is None:
            return True
        if is_compressed(self.layout.segment_path(name)):
            return True
        names = self.layout.segment_names()
        nxt = names[names.index(name) + 1] if name in names[:-1] else newest
        try:
            self._seq_of(nxt)
        except ArchiveError:
            return False  # the next segment's header is not on disk yet: it just closed
        return self.clock.now_ns() - self._opened_at[nxt] >= self.compress_grace_ns

    # ------------------------------------------------------------ uploads

    def _save(self) -> None:
        try:
            save_cursor(self._path, self.cursor)
        except OSError as exc:
            raise ForwardError(
                f"cannot save the forwarder cursor: {exc.strerror}", file=str(self._path)
            ) from exc

    def _put_segment(self, name: str) -> None:
        """Upload a segment file as it is on disk (it may be compressed meanwhile)."""
        for _ in range(3):
            path = self.layout.segment_path(name)
            try:
                self._uploader.put(f"{SEGMENTS}/{path.name}", path, moved_ok=True)
                return
            except Moved:
                continue  # renamed by the compressor between the lookup and the open
        raise ForwardError(f"segment {name} keeps moving (compression?); retrying later")


__all__ = ["S3Forwarder"]
