"""Taking the status snapshot (:mod:`~auditd_py.daemon.status`) of a running daemon."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Protocol

from auditd_py import __version__
from auditd_py.chain.encoding import format_ts
from auditd_py.clock import Clock
from auditd_py.config import Config, Loaded
from auditd_py.contracts import Source
from auditd_py.daemon.disk import Reading
from auditd_py.daemon.queue import BatchQueue
from auditd_py.daemon.rates import Rates
from auditd_py.daemon.sealloop import SealLoop
from auditd_py.daemon.sourceset import source_counters
from auditd_py.daemon.status import (
    CheckpointStatus,
    Counters,
    ForwardStatus,
    ReloadStatus,
    SealerStatus,
    SelfCheckStatus,
    Snapshot,
    SourceStatus,
)
from auditd_py.forward.runner import Runner
from auditd_py.record import META_SOURCE
from auditd_py.store.writer import ArchiveWriter


class Daemon(Protocol):
    """What a snapshot reads of the daemon (:class:`~auditd_py.daemon.supervisor.Daemon`)."""

    cfg: Config
    loaded: Loaded
    clock: Clock
    queue: BatchQueue
    sealer: SealLoop | None
    writer: ArchiveWriter | None
    started: float
    stopping: bool
    watchdog_s: float

    @property
    def sources(self) -> list[Source]: ...

    @property
    def failed_sources(self) -> dict[str, str]: ...

    @property
    def retired(self) -> dict[str, dict[str, int]]: ...

    @property
    def forwarders(self) -> list[Runner]: ...

    @property
    def disk(self) -> Reading | None: ...

    @property
    def rates(self) -> Rates: ...

    @property
    def self_check(self) -> SelfCheckStatus | None: ...

    @property
    def reload_status(self) -> ReloadStatus: ...


def _health_of(src: Source) -> tuple[bool, str]:
    try:
        return src.healthy()
    except Exception as exc:
        return False, f"health check failed: {exc}"


def source_statuses(d: Daemon) -> list[SourceStatus]:
    read = d.queue.read_counts()
    sealed = dict(d.sealer.stats.sealed_by_source) if d.sealer is not None else {}
    _, rates = d.rates.rates()
    types = {s.name: s.type for s in d.cfg.sources}
    running = {s.name: s for s in list(d.sources)}
    failed = dict(d.failed_sources)
    retired = {k: dict(v) for k, v in d.retired.items()}
    names = list(types)
    names += sorted({*read, *sealed, *retired} - set(types) - {META_SOURCE})
    out = []
    for name in names:
        src = running.get(name)
        pe = dr = 0
        if src is not None:
            ok, reason = _health_of(src)
            pe, dr = source_counters(src)
        elif name in failed:
            ok, reason = False, f"not running: {failed[name]}"
        elif name in types:
            ok, reason = True, "not started (run --once skips network sources)"
        else:
            ok, reason = True, "removed from the configuration"
        old = retired.get(name, {})
        out.append(
            SourceStatus(
                name=name,
                type=types.get(name),
                running=src is not None,
                healthy=ok,
                reason=reason,
                records_read=read.get(name, 0),
                records_sealed=sealed.get(name, 0),
                parse_errors=pe + old.get("parse_errors", 0),
                dropped=dr + old.get("dropped", 0),
                records_per_second=round(rates.get(name, 0.0), 3) if rates else None,
            )
        )
    return out


def last_checkpoint(d: Daemon) -> CheckpointStatus | None:
    """The newest checkpoint, read from the sealing state (None before the first)."""
    if d.writer is None:
        return None
    s = d.writer.sealer
    epoch, end, seq = s.epoch, s.epoch_start, s.epoch_first_seq
    if epoch == 0:
        return None
    return CheckpointStatus(
        epoch=epoch - 1,
        time=format_ts(end).decode(),
        timestamp=end / 1e9,
        age_seconds=round(max(0, d.clock.now_ns() - end) / 1e9, 3),
        seq_end=seq,
    )


def _archive_stats(d: Daemon) -> tuple[int, int, int]:
    """(segments, bytes in segments, free bytes on the archive's file system)."""
    if d.writer is None:
        return 0, 0, 0
    layout = d.writer.layout
    names = layout.segment_files()
    size = 0
    for _, path in names:
        with contextlib.suppress(OSError):  # deleted (or compressed) since the listing
            size += path.stat().st_size
    try:
        st = os.statvfs(layout.root)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return len(names), size, free


def _suspended(d: Daemon) -> bool:
    s = d.sealer
    return s is not None and (s.suspended.is_set() or s.disk_full_since is not None)


def sealer_status(d: Daemon) -> SealerStatus:
    sealer = d.sealer
    if sealer is None:
        return SealerStatus()
    st = sealer.stats
    return SealerStatus(
        alive=sealer.alive(),
        heartbeat_age_seconds=round(d.clock.monotonic() - sealer.heartbeat, 3),
        sealed=st.sealed,
        bytes_sealed=st.bytes_sealed,
        commits=st.commits,
        rotations=st.rotations,
        max_rotation_pause_ms=round(st.max_rotation_pause_ns / 1e6, 3),
        rotation_pause_ms={k: round(v, 3) for k, v in st.rotation_pause_ms().items()},
        rotations_postponed=st.rotations_postponed,
        max_commit_ms=round(st.max_commit_latency_ns / 1e6, 3),
        max_seal_latency_ms=round(st.max_seal_latency_ns / 1e6, 3),
        retention_deleted=st.retention_deleted,
    )


def _reasons(
    d: Daemon, sources: list[SourceStatus], cp: CheckpointStatus | None, sealer: SealerStatus
) -> list[str]:
    reasons = [f"source {v.name}: {v.reason or 'unhealthy'}" for v in sources if not v.healthy]
    loop = d.sealer
    if loop is not None:
        if loop.error is not None:
            reasons.append(f"sealer failed: {loop.error!r}")
        elif not sealer.alive:
            reasons.append("sealer thread is not running")
        elif (sealer.heartbeat_age_seconds or 0) > d.watchdog_s:
            reasons.append(f"sealer has made no progress for {sealer.heartbeat_age_seconds:.1f}s")
    interval = d.cfg.sealing.epoch_interval / 1e9
    if d.writer is not None:
        since = cp.age_seconds if cp else (d.clock.now_ns() - d.writer.sealer.epoch_start) / 1e9
        if since > 2 * interval:
            what = f"last checkpoint {since:.1f}s ago" if cp else f"no checkpoint for {since:.1f}s"
            reasons.append(f"{what}, more than two epoch intervals ({2 * interval:g}s)")
    check = d.self_check
    if check is not None and check.failed:
        reasons.append(check.reason())
    if d.stopping:
        reasons.append("stopping")
    if loop is not None and loop.disk_full_since is not None:
        held = d.writer.unwritten if d.writer is not None else 0
        reasons.append(
            f"the archive's file system is full for "
            f"{d.clock.monotonic() - loop.disk_full_since:.0f}s ({held} sealed bytes held)"
        )
    return reasons


def _forward_statuses(d: Daemon) -> list[ForwardStatus]:
    now = time.monotonic()  # the runners' clock
    return [
        ForwardStatus(
            target=r.fwd.name,
            kind=r.fwd.kind,
            lag=r.fwd.lag(),
            delivered=r.stats.delivered,
            failures=r.stats.failures,
            failing_for_seconds=(
                round(now - r.stats.failing_since, 3) if r.stats.failing_since is not None else None
            ),
            last_error=r.stats.last_error,
        )
        for r in d.forwarders
    ]


def _counters(d: Daemon) -> Counters:
    loop = d.sealer
    rs = d.reload_status
    if loop is None:
        return Counters(
            meta_read=d.queue.read_counts().get(META_SOURCE, 0),
            config_reload_ok=rs.ok,
            config_reload_success_timestamp=rs.success_timestamp,
        )
    st = loop.stats
    counts, total = st.seal_latency.snapshot()
    bounds = [*st.seal_latency.buckets, float("inf")]
    return Counters(
        meta_read=d.queue.read_counts().get(META_SOURCE, 0),
        meta_sealed=st.sealed_meta,
        retention_deleted_bytes=st.retention_deleted_bytes,
        disk_full_events=st.disk_full_events,
        disk_level_value=int(d.disk.level) if d.disk is not None else 0,
        seal_latency_buckets=tuple(zip(bounds, counts, strict=True)),
        seal_latency_sum=total,
        config_reload_ok=rs.ok,
        config_reload_success_timestamp=rs.success_timestamp,
    )


def snapshot(d: Daemon, *, archive: bool = True) -> Snapshot:
    """The daemon's state now (``archive=False``: skip listing the segment files)."""
    sources = source_statuses(d)
    sealer = sealer_status(d)
    cp = last_checkpoint(d)
    reasons = _reasons(d, sources, cp, sealer)
    rate, _ = d.rates.rates()
    segments, size, free = _archive_stats(d) if archive else (0, 0, 0)
    w = d.writer
    return Snapshot(
        status="unhealthy" if reasons else "ok",
        reasons=reasons,
        pid=os.getpid(),
        version=__version__,
        environment=d.cfg.environment,
        config=d.loaded.path,
        config_hash=d.loaded.digest,
        uptime_seconds=round(d.clock.monotonic() - d.started, 3),
        archive=str(w.layout.root) if w is not None else None,
        segment=w.segment if w is not None else None,
        segments=segments,
        archive_bytes=size,
        disk_free_bytes=free,
        disk_level=d.disk.level.name.lower() if d.disk is not None else "ok",
        reading_suspended=_suspended(d),
        unwritten_bytes=w.unwritten if w is not None else 0,
        epoch=w.sealer.epoch if w is not None else None,
        epoch_interval_seconds=d.cfg.sealing.epoch_interval / 1e9,
        last_checkpoint=cp,
        sealer=sealer,
        forward=_forward_statuses(d),
        queue_depth=d.queue.depth(),
        queue_capacity=d.queue.capacity,
        max_put_wait_ms=round(d.queue.max_put_wait_ns / 1e6, 3),
        positions=len(w.positions) if w is not None else 0,
        records_per_second=round(rate, 3) if rate is not None else None,
        rate_window_seconds=d.rates.window,
        sources=sources,
        up=not d.stopping,
        counters=_counters(d),
        self_check=d.self_check,
    )
