"""The adapter between the verify driver and the report writers.

:func:`run` calls :func:`~auditd_py.store.verification.verify` and catches the
integrity or format failure it raises, keeping how far verification got
(:meth:`~auditd_py.chain.verify.Verifier.reached`). An :class:`Outcome` holds
*failures* as a tuple so that a verifier that reports several (``--all``) plugs
in through :func:`from_failures` without changing any writer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from auditd_py.chain.verify import Report
from auditd_py.chain.verify_all import Extent
from auditd_py.errors import AuditdError, Failure, FormatError, IntegrityError
from auditd_py.store.verification import ArchiveSource, Progress, VerifyPolicy, check

FAMILIES: tuple[tuple[str, str, frozenset[str]], ...] = (
    # (family, what it checks, the failure codes that belong to it), in the order
    # a verification runs them (docs/FORMAT.md §15)
    ("identity", "archive.json: the identity and its public key", frozenset({Failure.IDENTITY})),
    (
        "checkpoints",
        "C1-C8: checkpoint signatures, order, links, ranges and windows",
        frozenset(
            {
                Failure.MISSING_CHECKPOINT,
                Failure.CHECKPOINT_ORDER,
                Failure.BAD_SIGNATURE,
                Failure.CHECKPOINT_LINK,
                Failure.CHECKPOINT_RANGE,
                Failure.CHECKPOINT_WINDOW,
            }
        ),
    ),
    (
        "anchor",
        "the anchor checkpoint is still held byte for byte",
        frozenset({Failure.ANCHOR_MISMATCH}),
    ),
    (
        "records",
        "R1-R4: record format, seq, epoch, hash links and MACs",
        frozenset(
            {
                Failure.MAC_MISMATCH,
                Failure.BROKEN_LINK,
                Failure.GAP,
                Failure.DUPLICATE,
                Failure.REORDER,
                Failure.WRONG_EPOCH,
                Failure.FORMAT,
            }
        ),
    ),
    (
        "segments",
        "R5, R7: segment headers, order and torn-tail recoveries",
        frozenset({Failure.MISSING_SEGMENT, Failure.SEGMENT_SWAPPED, Failure.SEGMENT_HEADER}),
    ),
    (
        "epochs",
        "R6: chain heads and Merkle roots match every checkpoint",
        frozenset({Failure.CHECKPOINT_MISMATCH}),
    ),
    (
        "retention",
        "R8, F3: deletions only by sealed retention records",
        frozenset({Failure.RETENTION}),
    ),
    (
        "completeness",
        "F1, F2: nothing checkpointed is missing, the tail is sealed",
        frozenset({Failure.TRUNCATED, Failure.UNSEALED_TAIL}),
    ),
)
_STAGE = {"identity": 0, "checkpoints": 1, "anchor": 2, "completeness": 4}
"""The stage each family runs in; the record-loop families (stage 3) run together."""
OTHER = "archive"
"""The family of a failure code not listed in :data:`FAMILIES` (a newer verifier's)."""


def family_of(code: str) -> str:
    for name, _, codes in FAMILIES:
        if code in codes:
            return name
    return OTHER


def stage_of(family: str) -> int:
    return _STAGE.get(family, 3)


@dataclass(frozen=True, slots=True)
class Finding:
    """One failure: its code (the README's table), message and where it is."""

    code: str
    message: str
    error: str = "IntegrityError"
    file: str | None = None
    line: int | None = None
    seq: int | None = None
    epoch: int | None = None
    field: str | None = None

    @classmethod
    def from_error(cls, exc: IntegrityError | FormatError) -> Finding:
        w = exc.where
        return cls(
            code=str(w.get("what") or Failure.FORMAT),
            message=exc.message,
            error=type(exc).__name__,
            file=_str(w.get("file")),
            line=_int(w.get("line")),
            seq=_int(w.get("seq")),
            epoch=_int(w.get("epoch")),
            field=_str(w.get("field")),
        )

    @property
    def family(self) -> str:
        return family_of(self.code)

    def where(self) -> str:
        """``segments/x.jsonl, line 3, seq 2`` (empty when nothing is known)."""
        parts = [self.file] if self.file else []
        parts += [
            f"{k} {v}"
            for k, v in (("line", self.line), ("seq", self.seq), ("epoch", self.epoch))
            if v is not None
        ]
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "error": self.error,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "seq": self.seq,
            "epoch": self.epoch,
            "field": self.field,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verification's result, as every writer sees it."""

    archive: str
    """The directory (or bucket URL) verified, as the user named it."""
    mode: str
    report: Report | None
    """The report of a successful verification (None after a failure)."""
    failures: tuple[Finding, ...] = ()
    reached: Extent | None = None
    """How far verification got (None if it failed before reading any record)."""
    segments: tuple[str, ...] = ()
    """Every segment the source lists, in order."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent on each segment read to its end."""
    anchored: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures


def from_failures(
    archive: str,
    policy: VerifyPolicy,
    failures: Sequence[Finding],
    *,
    report: Report | None = None,
    reached: Extent | None = None,
    segments: Sequence[str] = (),
    seconds: dict[str, float] | None = None,
) -> Outcome:
    """An outcome from what a verifier found: the plug for one that lists several."""
    return Outcome(
        archive=archive,
        mode=policy.mode,
        report=None if failures else report,
        failures=tuple(failures),
        reached=reached,
        segments=tuple(segments),
        seconds=dict(seconds or {}),
        anchored=policy.anchor is not None,
    )


def run(
    archive: str,
    source: ArchiveSource,
    policy: VerifyPolicy,
    progress: Progress | None = None,
    jobs: int = 1,
    keep_going: bool = False,
) -> Outcome:
    """Verify, catching the failure: an :class:`Outcome` either way.

    Only integrity and format failures are caught; an I/O or usage error
    (another :class:`~auditd_py.errors.AuditdError`) is raised as before.
    """
    clock = _SegmentClock(progress)
    clock.names = _listed(source)
    out = check(source, policy, clock.tick, keep_going=keep_going, jobs=jobs)
    return from_failures(
        archive,
        policy,
        [Finding.from_error(exc) for exc in out.failures],
        report=out.verification.report if out.verification is not None else None,
        reached=out.verified,
        segments=clock.names,
        seconds=clock.seconds,
    )


def _listed(source: ArchiveSource) -> list[str]:
    """The segments, for a report of a failure before they were listed (none if unlistable)."""
    try:
        return [n for n, _ in source.list_segments()]
    except (AuditdError, OSError):  # the verification itself says why, in one line
        return []


class _SegmentClock:
    """Times each segment from the driver's progress calls (``-1`` after each)."""

    def __init__(self, progress: Progress | None) -> None:
        self.names: list[str] = []
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def tick(self, n: int) -> None:
        if n < 0 and len(self.seconds) < len(self.names):
            now = time.perf_counter()
            self.seconds[self.names[len(self.seconds)]] = now - self._t
            self._t = now
        if self.progress is not None:
            self.progress(n)


def _str(v: object) -> str | None:
    return str(v) if v is not None else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
