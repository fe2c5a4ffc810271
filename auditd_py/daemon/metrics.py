"""The status snapshot as Prometheus metric families (``/metrics``).

Rules the dashboards and alerts in ``contrib/`` rely on:

* every family is there from the first scrape, with 0 where nothing happened
  yet (no checkpoint yet: ``…_last_checkpoint_timestamp_seconds 0``); families
  with a label per source or forward target have one sample per configured one;
* a counter's name says what it counts (``…_records_dropped_total``,
  ``…_retention_deleted_segments_total``);
* an enumeration is a label with one sample per value, 1 for the current one
  (``auditd_py_disk_level{level="low"}``), never a number to decode;
* ``auditd_py_build_info`` carries the version as labels, value 1.

Each block below is one function of the snapshot; :data:`SECTIONS` lists them
in the order they are exposed. A new block is a function added there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from auditd_py.chain.format import FORMAT_VERSION
from auditd_py.daemon.sealloop import LATENCY_BUCKETS
from auditd_py.daemon.status import SelfCheckStatus, Snapshot, SourceStatus
from auditd_py.record import META_SOURCE

DISK_LEVELS = ("ok", "low", "admin", "full")
"""``auditd_py_disk_level{level}``: above space_left, below it, below
admin_space_left, full (daemon/disk.py's Level, by name)."""
FORWARD_UNITS = {"syslog": "messages", "s3": "objects"}
"""What one delivery of a forwarder kind is (``unit`` label)."""


def _per_source(name: str, doc: str, views: list[SourceStatus], attr: str) -> CounterMetricFamily:
    m = CounterMetricFamily(name, doc, labels=["source"])
    for v in views:
        m.add_metric([v.name], getattr(v, attr))
    return m


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _daemon(s: Snapshot) -> Iterable[Metric]:
    info = GaugeMetricFamily(
        "auditd_py_build_info",
        "Always 1; the running version and archive format version as labels.",
        labels=["version", "format"],
    )
    info.add_metric([s.version or "unknown", str(FORMAT_VERSION)], 1)
    yield info
    yield _gauge("auditd_py_up", "1 while the daemon runs, 0 once it is stopping.", int(s.up))
    c = s.counters
    yield _gauge(
        "auditd_py_config_last_reload_successful",
        "1 if the last configuration reload (or the start) succeeded, 0 if it was refused.",
        int(c.config_reload_ok),
    )
    yield _gauge(
        "auditd_py_config_last_reload_success_timestamp_seconds",
        "When the configuration in force was loaded (Unix time): the start or the last "
        "successful reload.",
        c.config_reload_success_timestamp,
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
        "Records whose input a source could not parse (sealed raw).",
        views,
        "parse_errors",
    )
    yield _per_source(
        "auditd_py_records_dropped",
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
    yield CounterMetricFamily(
        "auditd_py_bytes_sealed",
        "Bytes appended to segments by this process.",
        value=s.sealer.bytes_sealed,
    )
    yield _gauge("auditd_py_queue_depth", "Records waiting to be sealed.", s.queue_depth)
    yield _gauge("auditd_py_queue_capacity", "Records the queue holds at most.", s.queue_capacity)
    per_bucket = c.seal_latency_buckets or tuple((le, 0) for le in (*LATENCY_BUCKETS, float("inf")))
    buckets: list[tuple[str, float]] = []
    acc = 0
    for le, n in per_bucket:
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
    yield _gauge(
        "auditd_py_rotation_pause_max_seconds",
        "The longest sealing pause a segment rotation caused in this process.",
        s.sealer.max_rotation_pause_ms / 1e3,
    )
    yield _gauge(
        "auditd_py_sealer_heartbeat_age_seconds",
        "Seconds since the sealing loop last ran.",
        s.sealer.heartbeat_age_seconds or 0.0,
    )


def _checkpoints(s: Snapshot) -> Iterable[Metric]:
    cp = s.last_checkpoint
    yield _gauge("auditd_py_epoch", "The epoch being sealed.", s.epoch or 0)
    yield _gauge(
        "auditd_py_positions", "Source positions tracked (files, journal cursors).", s.positions
    )
    yield _gauge(
        "auditd_py_last_checkpoint_timestamp_seconds",
        "End time of the newest checkpoint (Unix time; 0 before the first).",
        cp.timestamp if cp is not None else 0,
    )
    yield _gauge(
        "auditd_py_last_checkpoint_seq",
        "Records covered by the newest checkpoint (its seq_end; 0 before the first).",
        cp.seq_end if cp is not None else 0,
    )
    yield _gauge(
        "auditd_py_epoch_interval_seconds",
        "The configured epoch length: a checkpoint is due this often.",
        s.epoch_interval_seconds or 0,
    )


def _archive(s: Snapshot) -> Iterable[Metric]:
    c = s.counters
    yield _gauge("auditd_py_segments", "Segment files.", s.segments)
    yield _gauge("auditd_py_archive_bytes", "Bytes in segment files.", s.archive_bytes)
    yield CounterMetricFamily(
        "auditd_py_retention_deleted_segments",
        "Segments deleted by retention by this process (each deletion sealed).",
        value=s.sealer.retention_deleted,
    )
    yield CounterMetricFamily(
        "auditd_py_retention_deleted_bytes",
        "Bytes of segment files deleted by retention by this process.",
        value=c.retention_deleted_bytes,
    )
    yield CounterMetricFamily(
        "auditd_py_disk_full_writes_refused",
        "Writes to the archive the file system refused for lack of space.",
        value=c.disk_full_events,
    )
    level = GaugeMetricFamily(
        "auditd_py_disk_level",
        "1 for the archive disk's current level: ok, low (below space_left), admin "
        "(below admin_space_left), full.",
        labels=["level"],
    )
    for i, name in enumerate(DISK_LEVELS):
        level.add_metric([name], int(i == c.disk_level_value))
    yield level
    yield _gauge(
        "auditd_py_reading_suspended",
        "1 while the disk action 'suspend' (or a full disk) holds the sources.",
        int(s.reading_suspended),
    )
    yield _gauge(
        "auditd_py_unwritten_bytes",
        "Sealed bytes held in memory because the file system refused them.",
        s.unwritten_bytes,
    )
    yield _gauge(
        "auditd_py_disk_free_bytes",
        "Bytes available to the daemon on the archive's file system.",
        s.disk_free_bytes,
    )


def _forward(s: Snapshot) -> Iterable[Metric]:
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
        "Deliveries a forwarder had acknowledged, in the unit of its kind (syslog: "
        "messages, s3: objects).",
        labels=[*labels, "unit"],
    )
    fails = CounterMetricFamily(
        "auditd_py_forward_failed_attempts",
        "Failed delivery attempts (each retried with backoff).",
        labels=labels,
    )
    for f in s.forward:
        at = [f.target, f.kind]
        lag.add_metric(at, f.lag.get("records", 0))
        up.add_metric(at, 0 if f.failing_for_seconds is not None else 1)
        sent.add_metric([*at, FORWARD_UNITS.get(f.kind, "items")], f.delivered)
        fails.add_metric(at, f.failures)
    yield from (lag, up, sent, fails)


def self_verify_metrics(s: Snapshot) -> Iterable[Metric]:
    """The self-check (``auditd_py_self_verify_*``): a block of its own."""
    c = s.self_check or SelfCheckStatus()  # present from the first scrape, 0 until a check
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
    yield GaugeMetricFamily(
        "auditd_py_self_verify_last_check_timestamp_seconds",
        "When the last re-verification reached its verdict (Unix time; 0 before the first).",
        value=c.last_check_timestamp or 0,
    )
    yield GaugeMetricFamily(
        "auditd_py_self_verify_verified_seq",
        "Records of closed segments the last re-verification checked (its seq_end).",
        value=c.seq_end or 0,
    )


SECTIONS: tuple[Callable[[Snapshot], Iterable[Metric]], ...] = (
    _daemon,
    _sources,
    _sealer,
    _checkpoints,
    _archive,
    _forward,
    self_verify_metrics,
)


def metrics(s: Snapshot) -> Iterator[Metric]:
    """Every family, in a fixed order (scraped from the same snapshot as /health)."""
    for section in SECTIONS:
        yield from section(s)
