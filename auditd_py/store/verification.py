"""One verification driver over any archive source, under a policy.

The pure :class:`~auditd_py.chain.verify.Verifier` checks bytes; this module
feeds it from an :class:`ArchiveSource` (a local directory, an S3 bucket, the
directory :mod:`auditd_py.forward.collect` rebuilds from a collector's files)
and says what to require with a :class:`VerifyPolicy`. ``verify DIR``,
``verify s3://…`` and ``fleet verify`` all run :func:`verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Protocol

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.format import NS
from auditd_py.chain.verify import Report, Verifier
from auditd_py.chain.verify_all import Extent
from auditd_py.errors import Failure, FormatError, IntegrityError
from auditd_py.store.parallel import read_segments

Progress = Callable[[int], None]


class ArchiveSource(Protocol):
    """Where an archive's files are read from; every read names its file on failure."""

    @property
    def complete(self) -> bool:
        """False where checkpoints may arrive before the segments they cover (a bucket:
        the host uploads a segment once it is closed, each checkpoint at once)."""
        ...

    def read_identity(self) -> bytes:
        """The ``archive.json`` bytes, after any check of where they were found."""
        ...

    def read_checkpoints(self) -> Sequence[tuple[str, bytes]]:
        """(name, bytes) of every checkpoint, in name order."""
        ...

    def read_deletions(self) -> bytes:
        """The ``deletions.jsonl`` bytes (docs/FORMAT.md 16.4); empty if there is none."""
        ...

    def list_segments(self) -> Sequence[tuple[str, str]]:
        """(logical name, reference for :meth:`open_lines`) of every segment, in order."""
        ...

    def open_lines(self, ref: str) -> AbstractContextManager[IO[bytes]]:
        """A segment's raw lines (decompressed); a damaged stream raises IntegrityError."""
        ...


@dataclass(frozen=True, slots=True)
class MaxAge:
    """S1 (docs/FORMAT.md 15.9): the newest checkpoint must have ended within
    ``max_age_ns`` of ``now_ns`` (the verifier's clock, injected)."""

    max_age_ns: int
    now_ns: int

    def stale(self, last_end: int | None) -> str | None:
        """Why an archive whose newest checkpoint ended at ``last_end`` is stale, or None.

        The one rule of ``verify --max-age`` and ``fleet verify --max-age``.
        """
        if last_end is None:
            return "no checkpoint yet"
        age = self.now_ns - last_end
        if age > self.max_age_ns:
            return f"last checkpoint {age // NS}s ago > {self.max_age_ns // NS}s"
        return None


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What a verification requires, besides the format's own checks.

    Key mode (``mac_key`` given: every record's MAC) or public-key mode (chain,
    Merkle roots and signatures from the public key alone); an ``anchor``
    checkpoint the archive must still hold byte for byte; ``require_sealed``:
    no record after the last checkpoint; ``max_age``: the newest checkpoint is
    recent (S1).
    """

    public_key: bytes
    mac_key: bytes | None = None
    anchor: bytes | None = None
    require_sealed: bool = False
    max_age: MaxAge | None = None

    @property
    def mode(self) -> str:
        return "key" if self.mac_key is not None else "public-key"


@dataclass(frozen=True, slots=True)
class Verification:
    """A successful verification: the report, and what an incomplete source still owes."""

    report: Report
    pending: tuple[Checkpoint, ...] = ()
    """Checkpoints (checked) whose records are in segments the source does not hold yet."""
    pending_records: int = 0
    """The records those checkpoints cover that the source does not hold (yet)."""
    last_checkpoint: int | None = None
    """``end`` (ns) of the latest checkpoint."""

    @property
    def pending_since(self) -> int | None:
        """``end`` (ns) of the first pending checkpoint: how long its segment is awaited."""
        return self.pending[0].end if self.pending else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a verification found, pass or fail: the object every output renders.

    ``failures``: what failed, in the order found; each an
    :class:`~auditd_py.errors.IntegrityError` or
    :class:`~auditd_py.errors.FormatError` whose ``where`` holds ``what`` (the
    README's code, :class:`~auditd_py.errors.Failure`; a FormatError outside a
    record line has none: report it as ``format``) and, where known, ``file``,
    ``line``, ``seq``, ``epoch``, ``field``; ``diagnostics()`` is its JSON form.
    Empty: intact. One failure unless the verification kept going (``--all``).
    ``verified``: how far the walk got (records, segments, epochs, time range).
    ``verification``: the full result, when intact.
    """

    failures: tuple[IntegrityError | FormatError, ...]
    verified: Extent | None
    """None when the identity or every checkpoint failed (nothing was walked)."""
    verification: Verification | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        """``ok``; the first failure's diagnostics at the top (as without ``--all``);
        ``failures``: every one's; ``verified``: :meth:`Extent.as_dict`; the report
        when intact."""
        first = self.failures[0].diagnostics() if self.failures else {}
        report = self.verification.report.as_dict() if self.verification else {}
        return {
            "ok": self.ok,
            **first,
            **report,
            "failures": [e.diagnostics() for e in self.failures],
            "verified": self.verified.as_dict() if self.verified else None,
        }


def verify(
    source: ArchiveSource,
    policy: VerifyPolicy,
    progress: Progress | None = None,
    jobs: int = 1,
) -> Verification:
    """Verify the archive ``source`` holds under ``policy``, streaming every segment once.

    ``progress`` gets the bytes done in the current segment, and ``-1`` after each.
    An incomplete source is checked like a complete one except F1 for the
    checkpoints whose records it does not hold yet: those are *pending*.
    ``jobs`` > 1 verifies segments in that many processes
    (:mod:`~auditd_py.store.parallel`).
    Raises the first failure (see :func:`check` for all of them).
    """
    out = check(source, policy, progress, jobs=jobs)
    if out.failures:
        raise out.failures[0]
    assert out.verification is not None
    return out.verification


def check(
    source: ArchiveSource,
    policy: VerifyPolicy,
    progress: Progress | None = None,
    *,
    keep_going: bool = False,
    jobs: int = 1,
) -> Outcome:
    """:func:`verify`, returning the failures instead of raising them.

    ``keep_going`` (``verify --all``, docs/FORMAT.md 15.11): after a failure go on
    where the rest can still be checked: the next checkpoint, the next segment
    (from what its header states), the final checks. Errors that are not about
    the archive's bytes (unreadable files, usage) still raise. ``jobs`` applies
    only without ``keep_going``.
    """
    failures: list[IntegrityError | FormatError] = []
    v: Verifier | None = None
    try:
        make = _maker(source, policy)
        v = make(failures if keep_going else None)
        _walk(v, source, progress, make, 1 if keep_going else jobs)
        res = _finish(v, source, policy)
    except (IntegrityError, FormatError) as exc:
        failures.append(exc)
        return Outcome(tuple(failures), v.extent() if v is not None else None)
    if failures:
        return Outcome(tuple(failures), v.extent())
    return Outcome((), v.extent(), res)


def _maker(source: ArchiveSource, policy: VerifyPolicy) -> Callable[..., Verifier]:
    """Builds verifiers of ``source`` (identity, checkpoint and anchor checks run in
    each); given a list, the verifier records its failures there and keeps going."""
    identity = source.read_identity()
    cps = source.read_checkpoints()
    deletions = source.read_deletions()

    def make(failures: list[IntegrityError | FormatError] | None = None) -> Verifier:
        return Verifier(
            identity,
            cps,
            public_key=policy.public_key,
            mac_key=policy.mac_key,
            anchor=policy.anchor,
            require_sealed=policy.require_sealed,
            deletions=deletions,
            failures=failures,
        )

    return make


def _walk(
    v: Verifier,
    source: ArchiveSource,
    progress: Progress | None,
    make: Callable[[], Verifier],
    jobs: int,
) -> None:
    """Every segment once; with ``v.failures``, on to the next after a failure."""
    if not v.walkable:  # --all: a checkpoint is missing or unreadable; records cannot be placed
        return
    segs = source.list_segments()
    if jobs > 1 and len(segs) > 1:  # the same verdict and report, from several processes
        read_segments(v, source, segs, make, jobs, progress)
    for i, (name, ref) in enumerate(segs if jobs <= 1 or len(segs) <= 1 else ()):
        v.begin_segment(name)  # the logical name, which the header record carries
        try:
            with source.open_lines(ref) as fh:
                size, torn = v.records(fh, progress)
            v.end_segment(size, torn, last=i == len(segs) - 1)
        except (IntegrityError, FormatError) as exc:
            if v.failures is None:
                raise
            v.lost_sync(exc)  # --all: on to the next segment
        if progress is not None:
            progress(-1)


def _finish(v: Verifier, source: ArchiveSource, policy: VerifyPolicy) -> Verification:
    """F3, F1, F2 and S1; the result."""
    pending = () if source.complete or not v.walkable else tuple(v.pending)
    report = v.finish(partial=not source.complete or not v.walkable)
    last = v.cps[-1]  # G1: there is always the genesis checkpoint
    if policy.max_age is not None and (why := policy.max_age.stale(last.end)):
        v.fail(  # S1, after every other check
            IntegrityError(
                f"stale: {why} (--max-age): the host stopped checkpointing, or its newest "
                "epochs were cut off or rolled back",
                what=Failure.STALE,
                file=v.checkpoint_name(len(v.cps) - 1),
                epoch=last.epoch,
            )
        )
    return Verification(
        report=report,
        pending=pending,
        pending_records=(pending[-1].seq_end - v.seq) if pending else 0,
        last_checkpoint=last.end,
    )
