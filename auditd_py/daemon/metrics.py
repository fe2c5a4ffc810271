"""The status snapshot as Prometheus metric families (``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from auditd_py.daemon.status import Snapshot, SourceStatus
from auditd_py.record import META_SOURCE


def _per_source(name: str, doc: str, views: list[SourceStatus], attr: str) -> CounterMetricFamily:
    m = CounterMetricFamily(name, doc, labels=["source"])
    for v in views:
        m.add_metric([v.name], getattr(v, attr))
    return m


def metrics(s: Snapshot) -> Iterator[Metric]:
    """Every family, in a fixed order (scraped from the same snapshot as /health)."""
    yield from _sources(s)
    c = s.counters
    yield CounterMetricFamily(
        "auditd_py_bytes_sealed",
        "Bytes appended to segments by this process.",
        value=s.sealer.bytes_sealed,
    )
    yield GaugeMetricFamily(
        "auditd_py_queue_depth", "Records waiting to be sealed.", value=s.queue_depth
    )
    if c.seal_latency_buckets:
        yield from _sealer(s)
    if s.epoch is not None:
        yield GaugeMetricFamily("auditd_py_epoch", "The epoch being sealed.", value=s.epoch)
        yield GaugeMetricFamily(
            "auditd_py_positions",
            "Source positions tracked (files, journal cursors).",
            value=s.positions,
        )
    cp = s.last_checkpoint
    if cp is not None:
        yield GaugeMetricFamily(
            "auditd_py_last_checkpoint_timestamp_seconds",
            "End time of the newest checkpoint (Unix time).",
            value=cp.timestamp,
        )
        yield GaugeMetricFamily(
            "auditd_py_last_checkpoint_seq",
            "Records covered by the newest checkpoint (its seq_end).",
            value=cp.seq_end,
        )
    yield from _archive(s)
    yield from _forward(s)
    yield from self_verify_metrics(s)
    yield GaugeMetricFamily(
        "auditd_py_up", "1 while the daemon runs, 0 once it is stopping.", value=int(s.up)
    )


def _sources(s: Snapshot) -> Iterable[Metric]:
    views, c = s.sources, s.counters
    m = _per_source(
        "auditd_py_records_read",
        "Records handed by a source to the sealing queue (auditd-py: the daemon's own).",
        views,
        "records_read",
    )
    m.add_metric([META_SOURCE], c.meta_read)
    yield m
    m = _per_source(
        "auditd_py_records_sealed",
        "Records sealed into the archive (auditd-py: the daemon's own events).",
        views,
        "records_sealed",
    )
    m.add_metric([META_SOURCE], c.meta_sealed)
    yield m
    yield _per_source(
        "auditd_py_parse_errors",
        "Input a source could not parse (kept raw).",
        views,
        "parse_errors",
    )
    yield _per_source(
        "auditd_py_dropped",
        "Records a source lost: refused while the queue was full, or dropped by the kernel.",
        views,
        "dropped",
    )
    up = GaugeMetricFamily(
        "auditd_py_source_up", "1 if the source is healthy, else 0.", labels=["source", "type"]
    )
    for v in views:
        if v.type is not None:
            up.add_metric([v.name, v.type], 1.0 if v.healthy else 0.0)
    yield up


def _sealer(s: Snapshot) -> Iterable[Metric]:
    c = s.counters
    buckets: list[tuple[str, float]] = []
    acc = 0
    for le, n in c.seal_latency_buckets:
        acc += n
        buckets.append(("+Inf" if le == float("inf") else repr(float(le)), acc))
    yield HistogramMetricFamily(
        "auditd_py_seal_latency_seconds",
        "Time from a batch entering the queue to the fsync that made it durable.",
        buckets=buckets,
        sum_value=c.seal_latency_sum,
    )
    yield CounterMetricFamily(
        "auditd_py_segment_rotations",
        "Segments closed and continued in a new one by this process.",
        value=s.sealer.rotations,
    )
    yield GaugeMetricFamily(
        "auditd_py_rotation_pause_max_seconds",
        "The longest sealing pause a segment rotation caused in this process.",
        value=s.sealer.max_rotation_pause_ms / 1e3,
    )
    yield GaugeMetricFamily(
        "auditd_py_sealer_heartbeat_age_seconds",
        "Seconds since the sealing loop last ran.",
        value=s.sealer.heartbeat_age_seconds or 0.0,
    )


def _archive(s: Snapshot) -> Iterable[Metric]:
    c = s.counters
    yield GaugeMetricFamily("auditd_py_segments", "Segment files.", value=s.segments)
    yield GaugeMetricFamily(
        "auditd_py_archive_bytes", "Bytes in segment files.", value=s.archive_bytes
    )
    yield CounterMetricFamily(
        "auditd_py_retention_deletions",
        "Segments deleted by retention by this process (each one sealed).",
        value=s.sealer.retention_deleted,
    )
    yield CounterMetricFamily(
        "auditd_py_retention_deleted_bytes",
        "Bytes of segment files deleted by retention by this process.",
        value=c.retention_deleted_bytes,
    )
    yield CounterMetricFamily(
        "auditd_py_disk_full_events",
        "Times a write to the archive was refused for lack of space.",
        value=c.disk_full_events,
    )
    yield GaugeMetricFamily(
        "auditd_py_disk_level",
        "Disk pressure: 0 ok, 1 below space_left, 2 below admin_space_left, 3 full.",
        value=c.disk_level_value,
    )
    yield GaugeMetricFamily(
        "auditd_py_reading_suspended",
        "1 while the disk action 'suspend' (or a full disk) holds the sources.",
        value=int(s.reading_suspended),
    )
    yield GaugeMetricFamily(
        "auditd_py_unwritten_bytes",
        "Sealed bytes held in memory because the file system refused them.",
        value=s.unwritten_bytes,
    )
    yield GaugeMetricFamily(
        "auditd_py_disk_free_bytes",
        "Bytes available to the daemon on the archive's file system.",
        value=s.disk_free_bytes,
    )


def _forward(s: Snapshot) -> Iterable[Metric]:
    if not s.forward:
        return
    labels = ["target", "kind"]
    lag = GaugeMetricFamily(
        "auditd_py_forward_lag_records",
        "Sealed records a forwarder has not had acknowledged yet.",
        labels=labels,
    )
    up = GaugeMetricFamily(
        "auditd_py_forward_up",
        "1 while a forwarder's last attempt succeeded, 0 during an outage.",
        labels=labels,
    )
    sent = CounterMetricFamily(
        "auditd_py_forward_delivered",
        "Messages or objects a forwarder had acknowledged.",
        labels=labels,
    )
    fails = CounterMetricFamily(
        "auditd_py_forward_failures",
        "Failed attempts (each retried with backoff).",
        labels=labels,
    )
    for f in s.forward:
        at = [f.target, f.kind]
        lag.add_metric(at, f.lag.get("records", 0))
        up.add_metric(at, 0 if f.failing_for_seconds is not None else 1)
        sent.add_metric(at, f.delivered)
        fails.add_metric(at, f.failures)
    yield from (lag, up, sent, fails)


def self_verify_metrics(s: Snapshot) -> Iterable[Metric]:
    """The self-check (``auditd_py_self_verify_*``): a block of its own."""
    c = s.self_check
    if c is None:
        return
    yield GaugeMetricFamily(
        "auditd_py_self_verify_ok",
        "0 once a re-verification of the closed segments failed (until a restart), else 1.",
        value=0 if c.failed else 1,
    )
    yield CounterMetricFamily(
        "auditd_py_self_verify_checks",
        "Re-verifications of the closed segments that reached a verdict.",
        value=c.checks,
    )
    yield CounterMetricFamily(
        "auditd_py_self_verify_failures",
        "Re-verifications that found a closed segment changed or missing.",
        value=c.failed_checks,
    )
    yield CounterMetricFamily(
        "auditd_py_self_verify_inconclusive",
        "Re-verifications that could not run to a verdict (retried).",
        value=c.inconclusive_checks,
    )
    if c.last_check_timestamp is not None:
        yield GaugeMetricFamily(
            "auditd_py_self_verify_last_check_timestamp_seconds",
            "When the last re-verification reached its verdict (Unix time).",
            value=c.last_check_timestamp,
        )
    if c.seq_end is not None:
        yield GaugeMetricFamily(
            "auditd_py_self_verify_verified_seq",
            "Records of closed segments the last re-verification checked (its seq_end).",
            value=c.seq_end,
        )
