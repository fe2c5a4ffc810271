"""Archives in an S3 bucket: the key layout, the client, and streaming verification.

A forwarded archive lives under one key prefix (docs/FORWARDING.md)::

    <prefix>/<environment>/<host>/<archive-id>/archive.json
    <prefix>/<environment>/<host>/<archive-id>/checkpoints/cp-NNNNNNNNNN.json
    <prefix>/<environment>/<host>/<archive-id>/segments/seg-NNNNNNNNNN.jsonl[.zst|.gz]

Every object is written once, under Object Lock (COMPLIANCE), in a versioned
bucket. An overwrite cannot remove what was written, only add a newer version
on top of it, so **readers take the oldest version of each key**
(``ListObjectVersions``): what the host uploaded first, which no one can delete
or change before its retention date. A delete without a version id only adds a
delete marker, which readers ignore for the same reason.

A :class:`BucketArchive` is a verification source
(:mod:`auditd_py.store.verification`): each object is streamed into the verifier
(compressed segments decompressed on the fly), nothing is downloaded whole and
no temporary file is written. Verifying a bucket and a fleet is
:mod:`auditd_py.store.fleet`; this module only reads and lists the bucket.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from auditd_py.chain.format import SEGMENT_FILE
from auditd_py.chain.identity import Identity
from auditd_py.errors import (
    ArchiveError,
    AuditdError,
    Failure,
    IntegrityError,
    UsageError,
)
from auditd_py.store.bounded import CORRUPT, decompressed, read_capped
from auditd_py.store.layout import (
    CHECKPOINT_RE,
    CHECKPOINTS,
    IDENTITY,
    SEGMENTS,
    Layout,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1 << 20
_FETCHERS = 8
"""Checkpoints (small, many) are fetched this many at a time."""


# ---------------------------------------------------------------- locations and the client


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and a key prefix (without a trailing slash; may be empty)."""

    bucket: str
    prefix: str

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self.key(name))


def is_s3_url(text: str) -> bool:
    return text.startswith("s3://")


def parse_url(url: str) -> S3Location:
    """``s3://bucket/some/prefix`` → its bucket and prefix."""
    m = re.fullmatch(r"s3://([^/]+)(?:/(.*))?", url)
    if m is None or len(m.group(1)) < 3:
        raise UsageError(f"not an S3 location: {url!r} (use s3://BUCKET/PREFIX)")
    prefix = (m.group(2) or "").strip("/")
    if "//" in prefix:
        raise UsageError(f"empty path element in {url!r}")
    return S3Location(m.group(1), prefix)


def archive_location(
    bucket: str, prefix: str, environment: str, host: str, archive: str
) -> S3Location:
    """Where the forwarder puts an archive: ``<prefix>/<environment>/<host>/<archive-id>``."""
    parts = [p.strip("/") for p in (prefix, environment, host, archive)]
    for p in parts[1:]:
        if not p or "/" in p:
            raise UsageError(f"invalid key element {p!r} (environment, host, archive id)")
    return S3Location(bucket, "/".join(p for p in parts if p))


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach the S3 server. Credentials default to boto3's chain (the AWS env vars)."""

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    ca: Path | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    """Attempts per request inside botocore; the forward runner retries beyond that."""


def make_client(opts: S3Options) -> S3Client:
    """A boto3 S3 client (path-style addressing for a custom endpoint)."""
    import boto3  # noqa: PLC0415 - ~0.2 s to import: only commands that use S3 pay for it
    from botocore.config import Config  # noqa: PLC0415

    cfg = Config(
        retries={"max_attempts": opts.max_attempts, "mode": "standard"},
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        s3={"addressing_style": "path" if opts.endpoint else "auto"},
        # we send Content-MD5 and x-amz-checksum-sha256 ourselves
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    if opts.ca is not None and not opts.ca.is_file():
        raise UsageError("CA bundle not found", file=str(opts.ca))
    return boto3.client(
        "s3",
        endpoint_url=opts.endpoint,
        region_name=opts.region,
        aws_access_key_id=opts.access_key_id,
        aws_secret_access_key=opts.secret_access_key,
        verify=str(opts.ca) if opts.ca is not None else None,
        config=cfg,
    )


def error_text(exc: BaseException) -> str:
    """One line for a botocore/network error: the S3 error code and message, or the cause."""
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        err = resp.get("Error") or {}
        status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code, msg = err.get("Code"), err.get("Message")
        return f"{code or 'error'} (HTTP {status}): {msg or exc}"
    return f"{type(exc).__name__}: {exc}"


def error_code(exc: BaseException) -> str | None:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = (resp.get("Error") or {}).get("Code")
        return str(code) if code is not None else None
    return None


def _s3_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        from urllib3.exceptions import HTTPError  # noqa: PLC0415
    except ImportError:  # pragma: no cover - urllib3 comes with botocore
        return (BotoCoreError, ClientError, OSError)
    return (BotoCoreError, ClientError, HTTPError, OSError)


# ---------------------------------------------------------------- reading a bucket archive


@dataclass(frozen=True, slots=True)
class Obj:
    """One object version: the oldest of its key."""

    key: str
    version: str | None
    """None: the bucket is not versioned (its one version is ``null``)."""
    size: int


def list_versions(client: S3Client, loc: S3Location) -> dict[str, Obj]:
    """The oldest version of every key under ``loc`` (names relative to it).

    ``ListObjectVersions`` lists each key's versions newest first, so the last
    one seen is the oldest. Delete markers are not versions and are skipped.
    """
    out: dict[str, Obj] = {}
    base = loc.key("")
    pages = client.get_paginator("list_object_versions").paginate(Bucket=loc.bucket, Prefix=base)
    with _reading(loc.url):
        for page in pages:
            for v in page.get("Versions", []):
                key = v.get("Key", "")
                vid = v.get("VersionId")
                out[key[len(base) :]] = Obj(
                    key, vid if vid not in (None, "null") else None, int(v.get("Size", 0))
                )
    return out


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Map S3 and network errors to an ArchiveError naming the object (exit 2 in the CLI)."""
    try:
        yield
    except AuditdError:
        raise
    except _s3_errors() as exc:
        raise ArchiveError(f"cannot read {what}: {error_text(exc)}") from exc


class _Raw(io.RawIOBase):
    """A botocore streaming body as a raw stream (for buffering and decompression)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._body.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class BucketArchive:
    """One forwarded archive in a bucket, read through the oldest version of each key."""

    def __init__(self, client: S3Client, loc: S3Location) -> None:
        self.client = client
        self.loc = loc
        self.objects = list_versions(client, loc)

    def url(self, rel: str) -> str:
        return f"s3://{self.loc.bucket}/{self.loc.key(rel)}"

    def get(self, obj: Obj) -> Any:
        """The object's body stream (botocore StreamingBody)."""
        kw: dict[str, Any] = {"Bucket": self.loc.bucket, "Key": obj.key}
        if obj.version is not None:
            kw["VersionId"] = obj.version
        with _reading(f"s3://{self.loc.bucket}/{obj.key}"):
            return self.client.get_object(**kw)["Body"]

    def read(self, rel: str) -> bytes:
        obj = self.objects.get(rel)
        if obj is None:
            raise ArchiveError(f"not in the bucket: {self.url(rel)}")
        body = self.get(obj)
        with _reading(self.url(rel)):
            try:
                return read_capped(body, rel)
            finally:
                body.close()

    def identity(self) -> bytes:
        if IDENTITY not in self.objects:
            raise ArchiveError(
                f"no archive at {self.loc.url} (no {IDENTITY}; "
                "expected s3://BUCKET/PREFIX/ENV/HOST/ARCHIVE-ID)"
            )
        return self.read(IDENTITY)

    def checkpoint_names(self) -> list[str]:
        return sorted(
            rel
            for rel in self.objects
            if rel.startswith(CHECKPOINTS + "/")
            and CHECKPOINT_RE.fullmatch(rel[len(CHECKPOINTS) + 1 :])
        )

    def checkpoints(self) -> list[tuple[str, bytes]]:
        """(``checkpoints/cp-N.json``, bytes) in name order, fetched a few at a time."""
        names = self.checkpoint_names()
        if len(names) <= 1:
            return [(n, self.read(n)) for n in names]
        with ThreadPoolExecutor(max_workers=_FETCHERS) as pool:
            return list(zip(names, pool.map(self.read, names), strict=True))

    def segments(self) -> list[tuple[str, str]]:
        """(logical name, relative object name) of every segment, in order.

        As on disk (docs/FORMAT.md 3), a segment appears once: when both its plain
        object and a compressed one exist (a re-upload after a crash and a
        compression), the plain one is read; both hold the same records.
        """
        out: dict[str, str] = {}
        for rel in self.objects:
            if not rel.startswith(SEGMENTS + "/"):
                continue
            m = SEGMENT_FILE.fullmatch(rel[len(SEGMENTS) + 1 :])
            if m is None:
                continue
            logical = m["name"]
            have = out.get(logical)
            if (
                have is None
                or m["suffix"] is None
                or (have.endswith(".gz") and rel.endswith(".zst"))
            ):
                out[logical] = rel
        return [(k, out[k]) for k in sorted(out)]

    # -- as a verification source (auditd_py.store.verification.ArchiveSource)

    complete = False
    """The host uploads each checkpoint at once, a segment only once it is closed."""

    def read_identity(self) -> bytes:
        """``archive.json``, which must name the archive id its key prefix ends with."""
        identity = self.identity()
        ident = Identity.from_bytes(identity, file=self.url(IDENTITY))
        last = self.loc.prefix.rsplit("/", 1)[-1]
        if last != ident.archive:
            raise IntegrityError(
                f"the archive.json under {self.loc.url} names archive {ident.archive}: "
                "an archive uploaded under another archive's key",
                what=Failure.IDENTITY,
                file=IDENTITY,
                field="archive",
            )
        return identity

    def read_checkpoints(self) -> list[tuple[str, bytes]]:
        return self.checkpoints()

    def read_deletions(self) -> bytes:
        """Empty for a bucket: the forwarder uploads every segment before retention may
        delete it, so every deletion record is in the bucket's segments (16.4)."""
        return b""

    def list_segments(self) -> list[tuple[str, str]]:
        return self.segments()

    @contextmanager
    def open_lines(self, rel: str) -> Iterator[IO[bytes]]:
        """:meth:`open_segment`, with read and decompression failures naming the object."""
        with _reading(self.url(rel)), self.open_segment(rel) as fh:
            try:
                yield fh
            except CORRUPT as exc:
                raise IntegrityError(
                    f"compressed segment cannot be decompressed: {exc or type(exc).__name__}",
                    what=Failure.FORMAT,
                    file=rel,
                ) from exc

    @contextmanager
    def open_segment(self, rel: str) -> Iterator[IO[bytes]]:
        """The segment's lines as a buffered stream, decompressed on the fly."""
        raw = _Raw(self.get(self.objects[rel]))
        try:
            # strict (FORMAT.md 11.4) and bounded lines (store.bounded): a bomb or a
            # cut stream is a format failure, not a MemoryError or a shorter segment
            stream = decompressed(cast(IO[bytes], raw), rel, rel)
            with stream:
                yield stream
        finally:
            raw.close()


def bucket_anchor(client: S3Client, loc: S3Location, layout: Layout) -> bytes:
    """The latest checkpoint in the bucket, after checking the local archive against it.

    The bucket's ``archive.json`` must be the local one, and its checkpoints a
    prefix of the local ones, byte for byte: a host that lost (or cut) epochs
    the bucket holds fails with ``truncated``, one that rewrote a checkpoint or
    its identity with ``anchor_mismatch`` / ``identity``.
    """
    arc = BucketArchive(client, loc)
    if arc.identity() != layout.read_identity():
        raise IntegrityError(
            f"the local archive.json differs from the one in {loc.url}: "
            "another archive, or its identity was replaced",
            what=Failure.IDENTITY,
            file=IDENTITY,
        )
    remote = arc.checkpoints()
    if not remote:
        raise ArchiveError(f"no checkpoint in {loc.url} to anchor to yet")
    local = layout.checkpoint_files()
    for i, (name, line) in enumerate(remote):
        if i >= len(local):
            raise IntegrityError(
                f"archive truncated: {loc.url} holds checkpoints up to {remote[-1][0]}, "
                f"the local archive only up to "
                f"{local[-1][0] if local else 'none'}",
                what=Failure.TRUNCATED,
                file=name,
                epoch=i,
            )
        lname, lline = local[i]
        if lname != name or lline != line:
            raise IntegrityError(
                f"{lname} differs from {name} in {loc.url}: the local checkpoint was "
                "rewritten (or one is missing)",
                what=Failure.ANCHOR_MISMATCH,
                file=lname,
                epoch=i,
            )
    return remote[-1][1]


# ---------------------------------------------------------------- the fleet


@dataclass(frozen=True, slots=True)
class ArchiveRef:
    host: str
    archive: str
    loc: S3Location


def list_archives(client: S3Client, env: S3Location) -> list[ArchiveRef]:
    """Every ``<host>/<archive-id>/`` under an environment prefix."""
    out: list[ArchiveRef] = []
    for host in _subdirs(client, env):
        hloc = env.child(host)
        out.extend(ArchiveRef(host, a, hloc.child(a)) for a in _subdirs(client, hloc))
    return out


def _subdirs(client: S3Client, loc: S3Location) -> list[str]:
    base = loc.key("")
    names: set[str] = set()
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=loc.bucket, Prefix=base, Delimiter="/"
    )
    with _reading(loc.url):
        for page in pages:
            for cp in page.get("CommonPrefixes", []):
                p = cp.get("Prefix", "")[len(base) :].strip("/")
                if p:
                    names.add(p)
    return sorted(names)
