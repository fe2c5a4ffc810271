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
from typing import IO, Protocol

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.format import NS
from auditd_py.chain.verify import Report, Verifier
from auditd_py.errors import Failure, IntegrityError

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


def verify(
    source: ArchiveSource, policy: VerifyPolicy, progress: Progress | None = None
) -> Verification:
    """Verify the archive ``source`` holds under ``policy``, streaming every segment once.

    ``progress`` gets the bytes done in the current segment, and ``-1`` after each.
    An incomplete source is checked like a complete one except F1 for the
    checkpoints whose records it does not hold yet: those are *pending*.
    """
    identity = source.read_identity()
    cps = source.read_checkpoints()
    v = Verifier(
        identity,
        cps,
        public_key=policy.public_key,
        mac_key=policy.mac_key,
        anchor=policy.anchor,
        require_sealed=policy.require_sealed,
    )
    segs = source.list_segments()
    for i, (name, ref) in enumerate(segs):
        v.begin_segment(name)  # the logical name, which the header record carries
        with source.open_lines(ref) as fh:
            size, torn = v.records(fh, progress)
        v.end_segment(size, torn, last=i == len(segs) - 1)
        if progress is not None:
            progress(-1)
    pending = () if source.complete else tuple(v.pending)
    report = v.finish(partial=not source.complete)
    last = v.cps[-1]  # G1: there is always the genesis checkpoint
    if policy.max_age is not None and (why := policy.max_age.stale(last.end)):
        raise IntegrityError(  # S1, after every other check passed
            f"stale: {why} (--max-age): the host stopped checkpointing, or its newest "
            "epochs were cut off or rolled back",
            what=Failure.STALE,
            file=cps[-1][0],
            epoch=last.epoch,
        )
    return Verification(
        report=report,
        pending=pending,
        pending_records=(pending[-1].seq_end - v.seq) if pending else 0,
        last_checkpoint=last.end,
    )
