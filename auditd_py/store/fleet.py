"""Verifying forwarded archives in a bucket: one (``verify s3://…``) or a fleet.

Both run the one verification driver (:func:`auditd_py.store.verification.verify`)
over a :class:`~auditd_py.store.s3.BucketArchive`; ``fleet verify`` adds the
key ring (which public key is whose) and the staleness of each host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditd_py.chain.encoding import fingerprint
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import PublicKey
from auditd_py.chain.verify import Report
from auditd_py.errors import (
    AuditdError,
    Failure,
    FormatError,
    IntegrityError,
    KeyFileError,
    UsageError,
)
from auditd_py.store.s3 import ArchiveRef, BucketArchive, S3Location, list_archives
from auditd_py.store.verification import MaxAge, VerifyPolicy, verify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class BucketReport:
    """A verification of a bucket archive: the report and what is still on the host."""

    report: Report
    location: S3Location
    pending_checkpoints: int
    """Checkpoints in the bucket whose records are in segments not uploaded yet."""
    pending_records: int
    """The records those checkpoints cover that the bucket does not hold (yet)."""
    pending_since: int | None
    """``end`` (ns) of the first such checkpoint: how long the segment has been awaited."""
    last_checkpoint: int | None
    """``end`` (ns) of the latest checkpoint in the bucket."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.report.as_dict(),
            "location": self.location.url,
            "pending_checkpoints": self.pending_checkpoints,
            "pending_records": self.pending_records,
            "pending_since": self.pending_since,
            "last_checkpoint": self.last_checkpoint,
        }


def verify_bucket(
    client: S3Client,
    loc: S3Location,
    *,
    public_key: bytes,
    mac_key: bytes | None = None,
    anchor: bytes | None = None,
    require_sealed: bool = False,
    max_age: MaxAge | None = None,
    progress: Callable[[int], None] | None = None,
    archive: BucketArchive | None = None,
) -> BucketReport:
    """Verify a forwarded archive in place, streaming each object once.

    The checks are exactly those of a local verification (docs/FORMAT.md 15), on
    the oldest version of each key, with one difference: the host uploads a
    segment only once it is closed but each checkpoint as soon as it is written,
    so the newest checkpoints usually cover records of the host's open segment.
    Those checkpoints are checked like all others (signature, key chain, links);
    only F1 is not applied to them. They are reported as *pending* (how many,
    since when); every record the bucket does hold must match them up to there.
    """
    arc = archive if archive is not None else BucketArchive(client, loc)
    policy = VerifyPolicy(public_key, mac_key, anchor, require_sealed, max_age)
    res = verify(arc, policy, progress)
    return BucketReport(
        report=replace(res.report, warnings=_bucket_warnings(res.report)),
        location=loc,
        pending_checkpoints=len(res.pending),
        pending_records=res.pending_records,
        pending_since=res.pending_since,
        last_checkpoint=res.last_checkpoint,
    )


def _bucket_warnings(report: Report) -> tuple[str, ...]:
    """The verifier's warnings, with retention's seen from the bucket.

    A segment that retention deleted on the host was uploaded before (the
    forwarder's floor holds retention back), so the bucket still has it: the
    verifier's "deletion was interrupted" would mislead here.
    """
    policy = {f"segments/{r['segment']}": r.get("policy") for r in report.retention}
    out = []
    for w in report.warnings:
        seg = w.split(":", 1)[0]
        if seg in policy and "still present although a retention record deleted it" in w:
            out.append(f"{seg}: deleted on the host by retention ({policy[seg]}); kept here")
        else:
            out.append(w)
    return tuple(out)


# ---------------------------------------------------------------- the fleet


class KeyRing:
    """Public keys from a directory, found by archive id (file name or content) or key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_archive: dict[str, PublicKey] = {}
        self.by_key: dict[bytes, PublicKey] = {}
        try:
            files = sorted(p for p in directory.iterdir() if p.is_file())
        except OSError as exc:
            raise UsageError(
                f"cannot read the key directory: {exc.strerror}", file=str(directory)
            ) from exc
        for p in files:
            try:
                pk = PublicKey.from_bytes(p.read_bytes(), file=str(p))
            except (KeyFileError, FormatError, OSError):
                continue  # not a key file: ignored
            self.by_archive.setdefault(pk.archive, pk)
            self.by_key.setdefault(pk.public_key, pk)
            stem = p.name.removesuffix(".key") if p.name.endswith(".key") else p.stem
            if stem != pk.archive:
                self.by_archive.setdefault(stem, pk)

    def find(self, archive: str, identity: Identity | None) -> PublicKey | None:
        """The key named ``<archive>.key`` or for ``archive``, else the identity's own key.

        The last case only finds a key the auditor holds already: the identity's
        public key is matched against the key files, never trusted by itself.
        """
        pk = self.by_archive.get(archive)
        if pk is None and identity is not None:
            pk = self.by_key.get(identity.public_key)
        return pk


@dataclass(frozen=True, slots=True)
class FleetLine:
    host: str
    archive: str
    status: str
    """``ok``, ``stale``, ``failed``, ``no_key`` or ``error``."""
    records: int | None
    last_checkpoint: int | None
    pending_records: int
    detail: str
    what: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "archive": self.archive,
            "status": self.status,
            "records": self.records,
            "last_checkpoint": self.last_checkpoint,
            "pending_records": self.pending_records,
            "what": self.what,
            "detail": self.detail,
        }


def fleet_verify(
    client: S3Client,
    env: S3Location,
    keys: KeyRing,
    *,
    now_ns: int,
    max_age_ns: int | None,
    jobs: int = 1,
) -> Iterator[FleetLine]:
    """Verify every archive under an environment prefix (public-key mode), one line each.

    ``jobs`` archives are verified at once (threads: the reads wait on the network
    and the compiled record loop runs without the GIL); lines come in listing order.

    ``stale``: the latest checkpoint in the bucket ended more than ``max_age_ns``
    ago (or there is none): the host stopped checkpointing, or stopped uploading.
    """
    refs = list(list_archives(client, env))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        yield from pool.map(lambda r: _fleet_one(client, r, keys, now_ns, max_age_ns), refs)


def _fleet_one(
    client: S3Client, ref: ArchiveRef, keys: KeyRing, now_ns: int, max_age_ns: int | None
) -> FleetLine:
    def line(status: str, detail: str, **kw: Any) -> FleetLine:
        base: dict[str, Any] = {"records": None, "last_checkpoint": None, "pending_records": 0}
        return FleetLine(ref.host, ref.archive, status, detail=detail, **{**base, **kw})

    ident: Identity | None = None
    try:
        arc = BucketArchive(client, ref.loc)
    except AuditdError as exc:
        return line("error", str(exc))
    with suppress(AuditdError):  # verify_bucket names the problem
        ident = Identity.from_bytes(arc.identity())
    pk = keys.find(ref.archive, ident)
    if pk is None:
        fp = f" (public key {fingerprint(ident.public_key)})" if ident is not None else ""
        return line("no_key", f"no public key for this archive in {keys.directory}{fp}")
    try:
        res = verify_bucket(client, ref.loc, public_key=pk.public_key, archive=arc)
    except IntegrityError as exc:
        return line("failed", str(exc), what=exc.where.get("what", Failure.FORMAT))
    except FormatError as exc:
        return line("failed", str(exc), what=Failure.FORMAT)
    except AuditdError as exc:
        return line("error", str(exc))
    except Exception as exc:  # one host's archive must not stop the fleet
        return line("error", f"unexpected {type(exc).__name__}: {exc}")
    r = res.report
    kw: dict[str, Any] = {
        "records": r.records,
        "last_checkpoint": res.last_checkpoint,
        "pending_records": res.pending_records,
    }
    # The rule of `verify --max-age` (S1), reported as a status, not a failure.
    why = MaxAge(max_age_ns, now_ns).stale(res.last_checkpoint) if max_age_ns else None
    return line("stale", why, **kw) if why else line("ok", "", **kw)
