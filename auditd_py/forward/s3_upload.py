"""The PUTs of the S3 forwarder: Object Lock, checksums, never a replaced object.

Every PUT carries ``x-amz-object-lock-mode: COMPLIANCE``, ``Content-MD5``,
``x-amz-checksum-sha256`` and ``If-None-Match: *``; a 412 is resolved by comparing
the key's oldest version with the file (see :mod:`auditd_py.forward.s3`).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from auditd_py import events
from auditd_py.clock import Clock
from auditd_py.config import S3Forward
from auditd_py.contracts import Meta
from auditd_py.errors import ForwardError
from auditd_py.store.s3 import (
    S3Location,
    S3Options,
    error_code,
    error_text,
    make_client,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1 << 20
_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
"""What a server answers to ``If-None-Match: *`` on a key that exists."""


class ObjectLockUploader:
    """Uploads files under one archive's location, each key at most once."""

    def __init__(
        self,
        settings: S3Forward,
        loc: S3Location,
        clock: Clock,
        meta: Meta,
        client: S3Client | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.loc = loc
        self.clock = clock
        self.meta = meta
        self._client = client
        self._lock_checked = False
        self._conflicts: set[str] = set()
        self.uploads = 0
        """Objects acknowledged (duplicates included)."""
        self.uploaded_bytes = 0
        self.duplicates = 0
        """Re-uploads found already in the bucket with the same bytes (after a crash)."""

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

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def check_bucket(self) -> None:
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

    def put(self, rel: str, path: Path, *, moved_ok: bool = False) -> None:
        key = self.loc.key(rel)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below; an open file survives a rename
        except OSError as exc:
            if moved_ok and isinstance(exc, FileNotFoundError):
                raise Moved(str(path)) from exc
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


class Moved(Exception):
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
