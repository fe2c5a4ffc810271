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

import base64
import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from auditd_py import events
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
from auditd_py.store.compress import is_compressed
from auditd_py.store.layout import CHECKPOINT_RE, CHECKPOINTS, IDENTITY, SEGMENTS, Layout
from auditd_py.store.s3 import (
    S3Location,
    S3Options,
    archive_location,
    error_code,
    error_text,
    make_client,
)
from auditd_py.store.segment import read_header

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1 << 20
_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
"""What a server answers to ``If-None-Match: *`` on a key that exists."""


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
        self._client = client
        self._path = cursor_path(state_dir, self.name)
        self.cursor: Cursor = load_cursor(self._path, info.archive)
        self._first_seq: dict[str, int] = {}
        """Header seq of each segment (logical name), read once."""
        self._opened_at: dict[str, int] = {}
        """Header time of each segment: when the segment before it closed."""
        self._lock_checked = False
        self._conflicts: set[str] = set()
        self._step_lock = threading.Lock()
        self.uploads = 0
        """Objects acknowledged (duplicates included)."""
        self.uploaded_bytes = 0
        self.duplicates = 0
        """Re-uploads found already in the bucket with the same bytes (after a crash)."""

    # ------------------------------------------------------------ the protocol

    @property
    def client(self) -> S3Client:
        if self._client is None:
            s = self.settings
            self._client = make_client(
                S3Options(
                    endpoint=s.endpoint,
                    region=s.region,
                    access_key_id=s.access_key_id,
                    secret_access_key=s.secret_access_key,
                    ca=s.ca,
                )
            )
        return self._client

    def step(self) -> int:
        """Upload the identity, pending checkpoints and the oldest pending closed segment."""
        with self._step_lock:
            done = 0
            self._check_bucket()
            c = self.cursor
            if not c.identity_sent:
                self._put(IDENTITY, self.layout.identity)
                c.identity_sent = True
                self._save()
                done += 1
            while True:
                path = self.layout.checkpoint(c.checkpoint)
                if not path.exists():
                    break
                self._put(f"{CHECKPOINTS}/{path.name}", path)
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
        client, self._client = self._client, None
        if client is not None:
            client.close()

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

    def _check_bucket(self) -> None:
        """Once: the bucket exists and has Object Lock (else every PUT would be refused)."""
        if self._lock_checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            cfg = self.client.get_object_lock_configuration(Bucket=self.loc.bucket)
        except ClientError as exc:
            if error_code(exc) == "ObjectLockConfigurationNotFoundError":
                raise ForwardError(
                    f"bucket {self.loc.bucket} has no Object Lock: create it with Object Lock "
                    "enabled (objects could be deleted or overwritten otherwise)",
                    bucket=self.loc.bucket,
                ) from exc
            raise self._error("check Object Lock on", "", exc) from exc
        except BotoCoreError as exc:
            raise self._error("check Object Lock on", "", exc) from exc
        if cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise ForwardError(
                f"bucket {self.loc.bucket} does not have Object Lock enabled",
                bucket=self.loc.bucket,
            )
        self._lock_checked = True

    def _put_segment(self, name: str) -> None:
        """Upload a segment file as it is on disk (it may be compressed meanwhile)."""
        for _ in range(3):
            path = self.layout.segment_path(name)
            try:
                self._put(f"{SEGMENTS}/{path.name}", path, moved_ok=True)
                return
            except _Moved:
                continue  # renamed by the compressor between the lookup and the open
        raise ForwardError(f"segment {name} keeps moving (compression?); retrying later")

    def _put(self, rel: str, path: Path, *, moved_ok: bool = False) -> None:
        key = self.loc.key(rel)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below; an open file survives a rename
        except OSError as exc:
            if moved_ok and isinstance(exc, FileNotFoundError):
                raise _Moved(str(path)) from exc
            raise ForwardError(f"cannot read {path}: {exc.strerror}", file=str(path)) from exc
        with fh:
            md5, sha, size = _digests(fh, path)
            fh.seek(0)
            self._put_object(key, fh, md5, sha, size, rel)
        self.uploads += 1
        self.uploaded_bytes += size

    def _put_object(
        self, key: str, body: IO[bytes], md5: bytes, sha: bytes, size: int, rel: str
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        until = datetime.fromtimestamp(
            (self.clock.now_ns() + self.settings.retain_for) / 1e9, tz=UTC
        )
        try:
            self.client.put_object(
                Bucket=self.loc.bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                ContentMD5=base64.b64encode(md5).decode(),
                ChecksumSHA256=base64.b64encode(sha).decode(),
                ContentType=_content_type(rel),
                IfNoneMatch="*",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=until,
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in _EXISTS:
                self._already_there(key, md5, sha, size)
                return
            hint = f" (COMPLIANCE until {until.isoformat()})" if code == "InvalidRequest" else ""
            raise self._error("upload", key, exc, hint) from exc
        except BotoCoreError as exc:
            raise self._error("upload", key, exc) from exc
        except OSError as exc:  # the network below botocore, or reading the body
            raise self._error("upload", key, exc) from exc

    def _already_there(self, key: str, md5: bytes, sha: bytes, size: int) -> None:
        """A PUT refused because the key exists: the same bytes (a re-upload) or a conflict."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            versions = [
                v
                for page in self.client.get_paginator("list_object_versions").paginate(
                    Bucket=self.loc.bucket, Prefix=key
                )
                for v in page.get("Versions", [])
                if v.get("Key") == key
            ]
            if not versions:
                raise ForwardError(
                    f"s3://{self.loc.bucket}/{key} exists (the PUT was refused) but lists no "
                    "version; retrying",
                    bucket=self.loc.bucket,
                    key=key,
                )
            oldest = versions[-1]
            kw: dict[str, Any] = {"Bucket": self.loc.bucket, "Key": key, "ChecksumMode": "ENABLED"}
            if oldest.get("VersionId") not in (None, "null"):
                kw["VersionId"] = oldest["VersionId"]
            head = self.client.head_object(**kw)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("inspect", key, exc) from exc
        have_sha = head.get("ChecksumSHA256")
        if have_sha:
            same = have_sha == base64.b64encode(sha).decode()
        else:
            same = str(head.get("ETag", "")).strip('"') == md5.hex()
        same = same and int(head.get("ContentLength", -1)) == size
        if same:
            self.duplicates += 1
            return
        if key not in self._conflicts:
            self._conflicts.add(key)
            self.meta.event(
                events.FORWARD_CONFLICT,
                f"s3://{self.loc.bucket}/{key} already holds other bytes; not overwritten",
                forwarder=self.name,
                bucket=self.loc.bucket,
                key=key,
                version=oldest.get("VersionId"),
                size=int(head.get("ContentLength", -1)),
                expected_size=size,
            )
        raise ForwardError(
            f"s3://{self.loc.bucket}/{key} already holds different bytes (version "
            f"{oldest.get('VersionId')}, {head.get('ContentLength')} bytes, ours {size}): "
            "someone uploaded under this archive's key first; nothing is overwritten",
            bucket=self.loc.bucket,
            key=key,
        )

    def _error(self, doing: str, key: str, exc: BaseException, hint: str = "") -> ForwardError:
        where = f"s3://{self.loc.bucket}/{key}" if key else f"bucket {self.loc.bucket}"
        endpoint = self.settings.endpoint or "AWS"
        return ForwardError(
            f"cannot {doing} {where} at {endpoint}: {error_text(exc)}{hint}",
            bucket=self.loc.bucket,
            key=key or None,
        )


class _Moved(Exception):
    """The file was renamed (compressed) between its lookup and its opening."""


def _digests(fh: IO[bytes], path: Path) -> tuple[bytes, bytes, int]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    try:
        while chunk := fh.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ForwardError(f"cannot read {path}: {exc.strerror}", file=str(path)) from exc
    return md5.digest(), sha.digest(), size


def _content_type(rel: str) -> str:
    if rel.endswith(".json"):
        return "application/json"
    if rel.endswith(".jsonl"):
        return "application/jsonl"
    if rel.endswith(".zst"):
        return "application/zstd"
    if rel.endswith(".gz"):
        return "application/gzip"
    return "application/octet-stream"


__all__ = ["S3Forwarder"]
