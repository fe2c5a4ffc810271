"""One frozen snapshot of the running daemon, rendered four ways.

``/health`` serves :meth:`Snapshot.to_doc` (JSON), ``/metrics`` renders the same
snapshot as Prometheus families (:mod:`~auditd_py.daemon.observe`), systemd's
``STATUS=`` line is :meth:`Snapshot.status_line`, and ``auditd-py status`` reads
the JSON back with :meth:`Snapshot.from_doc` and prints :meth:`Snapshot.lines`.
This module imports nothing of the daemon: the CLI uses it without starting one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from auditd_py.errors import AuditdError

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    type: str | None
    """None for a source no longer configured (its counters are still exported)."""
    running: bool
    healthy: bool
    reason: str
    records_read: int
    records_sealed: int
    parse_errors: int
    dropped: int
    records_per_second: float | None


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    epoch: int
    time: str
    timestamp: float
    age_seconds: float
    seq_end: int


@dataclass(frozen=True, slots=True)
class ForwardStatus:
    target: str
    kind: str
    lag: dict[str, int]
    delivered: int
    failures: int
    failing_for_seconds: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SealerStatus:
    alive: bool = False
    heartbeat_age_seconds: float | None = None
    sealed: int = 0
    bytes_sealed: int = 0
    commits: int = 0
    rotations: int = 0
    max_rotation_pause_ms: float = 0.0
    rotation_pause_ms: dict[str, float] = field(default_factory=dict)
    rotations_postponed: int = 0
    max_commit_ms: float = 0.0
    max_seal_latency_ms: float = 0.0
    retention_deleted: int = 0


@dataclass(frozen=True, slots=True)
class SelfCheckStatus:
    """The daemon's re-verification of its closed segments (:mod:`~auditd_py.daemon.selfcheck`)."""

    state: str = "pending"
    """``pending`` (no check finished yet), ``passed`` or ``failed`` (kept until a restart)."""
    interval_seconds: float = 0.0
    checks: int = 0
    failed_checks: int = 0
    inconclusive_checks: int = 0
    last_check_timestamp: float | None = None
    seq_first: int | None = None
    seq_end: int | None = None
    """The closed segments' records the last check verified: seq_first..seq_end-1."""
    segments: int = 0
    code: str | None = None
    message: str | None = None
    file: str | None = None
    line: int | None = None
    seq: int | None = None
    last_error: str | None = None
    """Why the last check could not run to a verdict (the next one retries)."""

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def reason(self) -> str:
        where = ", ".join(
            x
            for x in (
                self.file,
                f"line {self.line}" if self.line is not None else None,
                f"seq {self.seq}" if self.seq is not None else None,
            )
            if x
        )
        return f"self-check failed: {self.code} at {where or 'the archive'}: {self.message}"

    def line_for_status(self) -> str:
        if self.failed:
            return f"  SELF-CHECK FAILED: {self.reason().removeprefix('self-check failed: ')}"
        if self.state == "passed":
            return (
                f"  self-check: passed, records {self.seq_first}..{(self.seq_end or 0) - 1}"
                f" in {self.segments} closed segments (every {self.interval_seconds:g}s,"
                f" {self.checks} checks)"
            )
        return f"  self-check: pending (every {self.interval_seconds:g}s)"


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """The outcome of the last configuration load (the start, or a reload)."""

    ok: bool = True
    success_timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class Counters:
    """Numbers only /metrics shows (not part of the /health document)."""

    meta_read: int = 0
    meta_sealed: int = 0
    retention_deleted_bytes: int = 0
    disk_full_events: int = 0
    disk_level_value: int = 0
    seal_latency_buckets: tuple[tuple[float, int], ...] = ()
    """(upper bound, count in that bucket) with +Inf last; not cumulative."""
    seal_latency_sum: float = 0.0
    config_reload_ok: bool = True
    """Whether the last reload (or the start) put its configuration in force."""
    config_reload_success_timestamp: float = 0.0
    """When the configuration in force was loaded (Unix time)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``/health`` says; field names are the document's keys."""

    status: str
    reasons: list[str]
    pid: int | None
    version: str | None
    environment: str | None
    config: str | None
    config_hash: str | None
    uptime_seconds: float | None
    archive: str | None
    segment: str | None
    segments: int
    archive_bytes: int
    disk_free_bytes: int
    disk_level: str
    reading_suspended: bool
    unwritten_bytes: int
    epoch: int | None
    epoch_interval_seconds: float | None
    last_checkpoint: CheckpointStatus | None
    sealer: SealerStatus
    forward: list[ForwardStatus]
    queue_depth: int
    queue_capacity: int
    max_put_wait_ms: float
    positions: int
    records_per_second: float | None
    rate_window_seconds: float | None
    sources: list[SourceStatus]
    up: bool = True
    counters: Counters = field(default_factory=Counters)
    self_check: SelfCheckStatus | None = None

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def to_doc(self) -> dict[str, Any]:
        """The JSON document served at ``/health`` (``status`` and ``reasons`` first)."""
        doc = asdict(self)
        del doc["up"], doc["counters"]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Snapshot:
        """Read a ``/health`` document back (missing or odd fields become empty values)."""
        cp = doc.get("last_checkpoint")
        sc = doc.get("self_check")
        scalars: dict[str, Any] = {k: doc.get(k) for k in _SCALARS}
        return cls(
            **scalars,
            segments=_int(doc.get("segments")),
            archive_bytes=_int(doc.get("archive_bytes")),
            disk_free_bytes=_int(doc.get("disk_free_bytes")),
            disk_level=str(doc.get("disk_level") or "ok"),
            reading_suspended=bool(doc.get("reading_suspended")),
            unwritten_bytes=_int(doc.get("unwritten_bytes")),
            reasons=[str(r) for r in doc.get("reasons") or []],
            status=str(doc.get("status") or "unhealthy"),
            last_checkpoint=_make(CheckpointStatus, cp) if isinstance(cp, dict) else None,
            sealer=_make(SealerStatus, doc.get("sealer") or {}),
            forward=[_make(ForwardStatus, f) for f in _dicts(doc.get("forward"))],
            sources=[_make(SourceStatus, s) for s in _dicts(doc.get("sources"))],
            queue_depth=_int(doc.get("queue_depth")),
            queue_capacity=_int(doc.get("queue_capacity")),
            max_put_wait_ms=float(doc.get("max_put_wait_ms") or 0),
            positions=_int(doc.get("positions")),
            self_check=_make(SelfCheckStatus, sc) if isinstance(sc, dict) else None,
        )

    def status_line(self) -> str:
        """systemd's ``STATUS=``: rate, last checkpoint, queue depth, targets, failures."""
        rate = self.records_per_second
        parts = [f"{rate:.1f} records/s" if rate is not None else "starting"]
        cp = self.last_checkpoint
        if cp is not None:
            parts.append(f"last checkpoint {cp.epoch} {cp.age_seconds:.0f}s ago")
        else:
            parts.append("no checkpoint yet")
        parts.append(f"queue {self.queue_depth}")
        for f in self.forward:
            down = f.failing_for_seconds
            parts.append(
                f"{f.target}: lag {f.lag.get('records', 0)}"
                + (f", down {down:.0f}s" if down is not None else "")
            )
        failed = sorted(s.name for s in self.sources if not s.running and not s.healthy)
        if failed:
            parts.append("not running: " + ", ".join(failed))
        if self.self_check is not None and self.self_check.failed:
            parts.append(f"SELF-CHECK FAILED: {self.self_check.code} in {self.self_check.file}")
        return ", ".join(parts)

    def lines(self, url: str) -> list[str]:
        """``auditd-py status`` for people, like ``systemctl status``."""
        state = "healthy" if self.healthy and self.status == "ok" else "UNHEALTHY"
        up = self.uptime_seconds
        out = [
            f"auditd-py (pid {self.pid}) at {url}: {state}"
            + (f", up {int(up)}s" if isinstance(up, int | float) else "")
        ]
        out += [f"  problem: {r}" for r in self.reasons]
        out.append(
            f"  archive {self.archive}: epoch {self.epoch}, segment {self.segment}"
            f" of {self.segments}, {human_bytes(self.archive_bytes)},"
            f" {human_bytes(self.disk_free_bytes)} free"
        )
        cp = self.last_checkpoint
        out.append(
            f"  last checkpoint: epoch {cp.epoch} at {cp.time}"
            f" ({cp.age_seconds}s ago, {cp.seq_end} records)"
            if cp is not None
            else "  last checkpoint: none yet"
        )
        out.append(
            f"  sealing {_rate(self.records_per_second)} over the last"
            f" {self.rate_window_seconds}s, queue {self.queue_depth},"
            f" {self.positions} positions"
        )
        for s in self.sources:
            ok = "ok" if s.healthy else "UNHEALTHY"
            reason = f" ({s.reason})" if s.reason else ""
            out.append(
                f"  source {s.name} ({s.type or 'removed'}): {ok}{reason};"
                f" {_rate(s.records_per_second)}, read {s.records_read},"
                f" sealed {s.records_sealed}"
            )
        if self.disk_level != "ok" or self.reading_suspended:
            out.append(
                f"  disk: {self.disk_level}"
                + (", reading suspended" if self.reading_suspended else "")
                + (f", {self.unwritten_bytes} sealed bytes held" if self.unwritten_bytes else "")
            )
        if self.self_check is not None:
            out.append(self.self_check.line_for_status())
        for f in self.forward:
            down = f.failing_for_seconds
            state = f"DOWN for {down}s ({f.last_error})" if down is not None else "ok"
            out.append(
                f"  forward {f.target} ({f.kind}): {state}; lag "
                + ", ".join(f"{v} {k}" for k, v in f.lag.items())
                + f"; delivered {f.delivered}"
            )
        return out


_SCALARS = (
    "pid",
    "version",
    "environment",
    "config",
    "config_hash",
    "uptime_seconds",
    "archive",
    "segment",
    "epoch",
    "epoch_interval_seconds",
    "records_per_second",
    "rate_window_seconds",
)


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _dicts(v: object) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _make(cls: type[_T], doc: dict[str, Any]) -> _T:
    """A status dataclass from a document, keeping only the fields it has."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in doc.items() if k in names})
    except TypeError as exc:
        raise AuditdError(f"the daemon's status document lacks a field: {exc}") from exc


def human_bytes(n: object) -> str:
    if not isinstance(n, int | float):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _rate(r: object) -> str:
    return f"{r:.1f}/s" if isinstance(r, int | float) else "-"
