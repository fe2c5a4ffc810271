"""What ``verify --all`` needs from the verifier, and how far a walk got.

:class:`KeepGoing` is a base of :class:`~auditd_py.chain.verify.Verifier`:
failures collected instead of raised, a segment passed over after a failure
(the next header resynchronises, docs/FORMAT.md 15.11), and the
:class:`Extent` of what was checked, for a report on failure. Split from the
verifier, which keeps the record loop; pure, like the rest of the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.checkpoint_chain import Failures
from auditd_py.chain.encoding import scan_int
from auditd_py.chain.verify_meta import SegmentRead
from auditd_py.errors import FormatError, IntegrityError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Extent:
    """How far a verification got, also when it failed: what was checked."""

    records: int
    """Records accepted (from ``first_seq`` to ``seq_end``)."""
    first_seq: int
    seq_end: int
    segments: tuple[str, ...]
    """Segments read to their end, in order."""
    epochs: int
    """Checkpoints whose records were matched (R6), the genesis included."""
    first_time: int | None
    last_time: int | None
    """``time`` (ns) of the first and the last record accepted."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "first_seq": self.first_seq,
            "seq_end": self.seq_end,
            "segments": list(self.segments),
            "epochs": self.epochs,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }


class KeepGoing:
    """Collecting failures (``failures`` is None: raise the first, as always).

    The attributes are set by :class:`~auditd_py.chain.verify.Verifier`.
    """

    failures: Failures | None
    in_sync: bool
    """False after a failure in a segment (``--all``) until a header resynchronises."""
    cps: list[Checkpoint]
    ci: int
    seq: int
    first_seq: int
    segments: list[SegmentRead]
    _seg: SegmentRead | None
    _resync: bool
    _skipped: bool
    _cp_names: list[str]
    _first_body: bytes | None
    _last_body: bytes | None

    def gather(self, check: Callable[..., T], *args: Any) -> T | None:
        """``check(*args)``; with ``failures``, what it raises is recorded instead."""
        try:
            return check(*args)
        except (IntegrityError, FormatError) as exc:
            if self.failures is None:
                raise
            self.failures.append(exc)
            return None

    @property
    def walkable(self) -> bool:
        """The checkpoints are epochs 0, 1, … in order: records can be matched to them
        (false only with ``failures``, after a checkpoint was missing or unreadable)."""
        return all(cp.epoch == i for i, cp in enumerate(self.cps))

    def lost_sync(self, exc: IntegrityError | FormatError) -> None:
        """``--all``: record ``exc``, a failure in the current segment, and pass over the
        rest of it; the next segment's header says where the chain resumes (R5')."""
        assert self.failures is not None
        self.failures.append(exc)
        self._seg = None
        self._resync = True
        self.in_sync = False
        self._skipped = True

    def checkpoint_name(self, i: int) -> str:
        """The file of checkpoint ``i`` (``checkpoints/cp-….json``)."""
        return self._cp_names[i]

    def fail(self, exc: IntegrityError) -> None:
        """Raise ``exc``, or with ``failures`` (``--all``) record it and go on."""
        if self.failures is None:
            raise exc
        self.failures.append(exc)

    def extent(self) -> Extent:
        """What this verification has checked so far (for a report on failure)."""
        return Extent(
            records=self.seq - self.first_seq,
            first_seq=self.first_seq,
            seq_end=self.seq,
            segments=tuple(s.name for s in self.segments if s.end is not None),
            epochs=self.ci,
            first_time=scan_int(self._first_body, b"time") if self._first_body else None,
            last_time=scan_int(self._last_body, b"time") if self._last_body else None,
        )
