"""What the running daemon says about itself: Prometheus metrics and ``/health``.

One small HTTP server (``metrics:`` in the configuration, loopback by default)
answers

* ``GET /metrics``: the Prometheus text format, from a registry of this daemon's
  own (never the global one, so several daemons can run in one test process);
* ``GET /health``: 200 and a JSON document when every source is healthy, the
  sealer is making progress and the last checkpoint is younger than two epoch
  intervals; 503 and the same document, with ``reasons``, otherwise.
  ``auditd-py status`` prints that document.

Values are collected when scraped (a :class:`DaemonCollector` reads the daemon's
state), not updated on the sealing path: the only counters kept on the hot path
are the queue's per-batch record counts and the sealer's per-commit latency
buckets (:mod:`auditd_py.daemon.sealloop`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from auditd_py import __version__
from auditd_py.chain.encoding import format_ts
from auditd_py.config import split_listen
from auditd_py.contracts import Source
from auditd_py.errors import AuditdError, UsageError
from auditd_py.record import META_SOURCE

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from auditd_py.daemon.sealloop import SealLoop
    from auditd_py.daemon.supervisor import Daemon


@dataclass(frozen=True, slots=True)
class SourceView:
    name: str
    type: str | None
    """None for a source no longer configured (its counters are still exported)."""
    running: bool
    healthy: bool
    reason: str
    read: int
    sealed: int
    parse_errors: int
    dropped: int
    rate: float | None


def _source_counters(src: Source) -> tuple[int, int]:
    """(parse errors, drops) of a source that keeps such counts (syslog)."""
    try:
        s = src.stats()
    except Exception:  # a scrape must not fail because one source cannot count
        return 0, 0
    return int(s.get("parse_errors", 0)), int(s.get("dropped", 0)) + int(s.get("kernel_drops", 0))


def source_views(d: Daemon) -> list[SourceView]:
    read = d.queue.read_counts()
    sealed = dict(d.sealer.stats.sealed_by_source) if d.sealer is not None else {}
    _, rates = d.rates.rates()
    types = {s.name: s.type for s in d.cfg.sources}
    running = {s.name: s for s in list(d.sources)}
    failed = dict(d.failed_sources)
    retired = {k: dict(v) for k, v in d.retired.items()}
    names = list(types)
    for n in sorted({*read, *sealed, *retired} - set(types) - {META_SOURCE}):
        names.append(n)
    out = []
    for name in names:
        src = running.get(name)
        if src is not None:
            try:
                ok, reason = src.healthy()
            except Exception as exc:
                ok, reason = False, f"health check failed: {exc}"
            pe, dr = _source_counters(src)
        elif name in failed:
            ok, reason, pe, dr = False, f"not running: {failed[name]}", 0, 0
        elif name in types:
            ok, reason, pe, dr = True, "not started (run --once skips network sources)", 0, 0
        else:
            ok, reason, pe, dr = True, "removed from the configuration", 0, 0
        old = retired.get(name, {})
        out.append(
            SourceView(
                name=name,
                type=types.get(name),
                running=src is not None,
                healthy=ok,
                reason=reason,
                read=read.get(name, 0),
                sealed=sealed.get(name, 0),
                parse_errors=pe + old.get("parse_errors", 0),
                dropped=dr + old.get("dropped", 0),
                rate=rates.get(name, 0.0) if rates else None,
            )
        )
    return out


def last_checkpoint(d: Daemon) -> dict[str, Any] | None:
    """The newest checkpoint, read from the sealing state (None before the first)."""
    if d.writer is None:
        return None
    s = d.writer.sealer
    epoch, end, seq = s.epoch, s.epoch_start, s.epoch_first_seq
    if epoch == 0:
        return None
    return {
        "epoch": epoch - 1,
        "time": format_ts(end).decode(),
        "timestamp": end / 1e9,
        "age_seconds": round(max(0, d.clock.now_ns() - end) / 1e9, 3),
        "seq_end": seq,
    }


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


def _pauses(sealer: SealLoop | None) -> dict[str, Any]:
    """Where sealing stopped: rotation pauses, the longest commit, the longest record wait."""
    if sealer is None:
        return {}
    st = sealer.stats
    return {
        "rotation_pause_ms": {k: round(v, 3) for k, v in st.rotation_pause_ms().items()},
        "rotations_postponed": st.rotations_postponed,
        "max_commit_ms": round(st.max_commit_latency_ns / 1e6, 3),
        "max_seal_latency_ms": round(st.max_seal_latency_ns / 1e6, 3),
    }


def health(d: Daemon) -> tuple[bool, dict[str, Any]]:
    """(healthy, the document served at /health and printed by ``status``)."""
    reasons: list[str] = []
    sources = source_views(d)
    for v in sources:
        if not v.healthy:
            reasons.append(f"source {v.name}: {v.reason or 'unhealthy'}")
    sealer = d.sealer
    heartbeat_age = None
    if sealer is not None:
        heartbeat_age = d.clock.monotonic() - sealer.heartbeat
        if sealer.error is not None:
            reasons.append(f"sealer failed: {sealer.error!r}")
        elif not sealer.alive():
            reasons.append("sealer thread is not running")
        elif heartbeat_age > d.watchdog_s:
            reasons.append(f"sealer has made no progress for {heartbeat_age:.1f}s")
    interval = d.cfg.sealing.epoch_interval / 1e9
    cp = last_checkpoint(d)
    if d.writer is not None:
        since = cp["age_seconds"] if cp else (d.clock.now_ns() - d.writer.sealer.epoch_start) / 1e9
        if since > 2 * interval:
            what = f"last checkpoint {since:.1f}s ago" if cp else f"no checkpoint for {since:.1f}s"
            reasons.append(f"{what}, more than two epoch intervals ({2 * interval:g}s)")
    if d.stopping:
        reasons.append("stopping")
    if sealer is not None and sealer.disk_full_since is not None:
        held = d.writer.unwritten if d.writer is not None else 0
        reasons.append(
            f"the archive's file system is full for "
            f"{d.clock.monotonic() - sealer.disk_full_since:.0f}s ({held} sealed bytes held)"
        )
    total_rate, _ = d.rates.rates()
    segments, size, free = _archive_stats(d)
    doc: dict[str, Any] = {
        "status": "unhealthy" if reasons else "ok",
        "reasons": reasons,
        "pid": os.getpid(),
        "version": __version__,
        "environment": d.cfg.environment,
        "config": d.loaded.path,
        "config_hash": d.loaded.digest,
        "uptime_seconds": round(d.clock.monotonic() - d.started, 3),
        "archive": str(d.writer.layout.root) if d.writer is not None else None,
        "segment": d.writer.segment if d.writer is not None else None,
        "segments": segments,
        "archive_bytes": size,
        "disk_free_bytes": free,
        "disk_level": d.disk.level.name.lower() if d.disk is not None else "ok",
        "reading_suspended": _suspended(d),
        "unwritten_bytes": d.writer.unwritten if d.writer is not None else 0,
        "epoch": d.writer.sealer.epoch if d.writer is not None else None,
        "epoch_interval_seconds": interval,
        "last_checkpoint": cp,
        "sealer": {
            "alive": sealer is not None and sealer.alive(),
            "heartbeat_age_seconds": round(heartbeat_age, 3) if heartbeat_age is not None else None,
            "sealed": sealer.stats.sealed if sealer is not None else 0,
            "bytes_sealed": sealer.stats.bytes_sealed if sealer is not None else 0,
            "commits": sealer.stats.commits if sealer is not None else 0,
            "rotations": sealer.stats.rotations if sealer is not None else 0,
            "max_rotation_pause_ms": (
                round(sealer.stats.max_rotation_pause_ns / 1e6, 3) if sealer is not None else 0
            ),
            **_pauses(sealer),
            "retention_deleted": sealer.stats.retention_deleted if sealer is not None else 0,
        },
        "forward": [
            {
                "target": r.fwd.name,
                "kind": r.fwd.kind,
                "lag": r.fwd.lag(),
                "delivered": r.stats.delivered,
                "failures": r.stats.failures,
                "failing_for_seconds": (
                    round(time.monotonic() - r.stats.failing_since, 3)
                    if r.stats.failing_since is not None
                    else None
                ),
                "last_error": r.stats.last_error,
            }
            for r in d.forwarders
        ],
        "queue_depth": d.queue.depth(),
        "queue_capacity": d.queue.capacity,
        "max_put_wait_ms": round(d.queue.max_put_wait_ns / 1e6, 3),
        "positions": len(d.writer.positions) if d.writer is not None else 0,
        "records_per_second": round(total_rate, 3) if total_rate is not None else None,
        "rate_window_seconds": d.rates.window,
        "sources": [
            {
                "name": v.name,
                "type": v.type,
                "running": v.running,
                "healthy": v.healthy,
                "reason": v.reason,
                "records_read": v.read,
                "records_sealed": v.sealed,
                "parse_errors": v.parse_errors,
                "dropped": v.dropped,
                "records_per_second": round(v.rate, 3) if v.rate is not None else None,
            }
            for v in sources
        ],
    }
    return not reasons, doc


# ---------------------------------------------------------------- Prometheus


class DaemonCollector(Collector):
    """Reads the daemon's state when scraped."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def collect(self) -> Iterable[Metric]:
        d = self.d
        views = source_views(d)
        read = d.queue.read_counts()
        sealer = d.sealer

        def per_source(name: str, doc: str, attr: str) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=["source"])
            for v in views:
                m.add_metric([v.name], getattr(v, attr))
            return m

        m = per_source(
            "auditd_py_records_read",
            "Records handed by a source to the sealing queue (auditd-py: the daemon's own).",
            "read",
        )
        m.add_metric([META_SOURCE], read.get(META_SOURCE, 0))
        yield m
        m = per_source(
            "auditd_py_records_sealed",
            "Records sealed into the archive (auditd-py: the daemon's own events).",
            "sealed",
        )
        m.add_metric([META_SOURCE], sealer.stats.sealed_meta if sealer is not None else 0)
        yield m
        yield per_source(
            "auditd_py_parse_errors", "Input a source could not parse (kept raw).", "parse_errors"
        )
        yield per_source(
            "auditd_py_dropped",
            "Records a source lost: refused while the queue was full, or dropped by the kernel.",
            "dropped",
        )
        up = GaugeMetricFamily(
            "auditd_py_source_up", "1 if the source is healthy, else 0.", labels=["source", "type"]
        )
        for v in views:
            if v.type is not None:
                up.add_metric([v.name, v.type], 1.0 if v.healthy else 0.0)
        yield up
        yield CounterMetricFamily(
            "auditd_py_bytes_sealed",
            "Bytes appended to segments by this process.",
            value=sealer.stats.bytes_sealed if sealer is not None else 0,
        )
        yield GaugeMetricFamily(
            "auditd_py_queue_depth", "Records waiting to be sealed.", value=d.queue.depth()
        )
        if sealer is not None:
            counts, total = sealer.stats.seal_latency.snapshot()
            buckets: list[tuple[str, float]] = []
            acc = 0
            for le, c in zip(sealer.stats.seal_latency.buckets, counts, strict=False):
                acc += c
                buckets.append((repr(float(le)), acc))
            buckets.append(("+Inf", acc + counts[-1]))
            yield HistogramMetricFamily(
                "auditd_py_seal_latency_seconds",
                "Time from a batch entering the queue to the fsync that made it durable.",
                buckets=buckets,
                sum_value=total,
            )
            yield CounterMetricFamily(
                "auditd_py_segment_rotations",
                "Segments closed and continued in a new one by this process.",
                value=sealer.stats.rotations,
            )
            yield GaugeMetricFamily(
                "auditd_py_rotation_pause_max_seconds",
                "The longest sealing pause a segment rotation caused in this process.",
                value=sealer.stats.max_rotation_pause_ns / 1e9,
            )
            yield GaugeMetricFamily(
                "auditd_py_sealer_heartbeat_age_seconds",
                "Seconds since the sealing loop last ran.",
                value=d.clock.monotonic() - sealer.heartbeat,
            )
        if d.writer is not None:
            yield GaugeMetricFamily(
                "auditd_py_epoch", "The epoch being sealed.", value=d.writer.sealer.epoch
            )
            yield GaugeMetricFamily(
                "auditd_py_positions",
                "Source positions tracked (files, journal cursors).",
                value=len(d.writer.positions),
            )
        cp = last_checkpoint(d)
        if cp is not None:
            yield GaugeMetricFamily(
                "auditd_py_last_checkpoint_timestamp_seconds",
                "End time of the newest checkpoint (Unix time).",
                value=cp["timestamp"],
            )
            yield GaugeMetricFamily(
                "auditd_py_last_checkpoint_seq",
                "Records covered by the newest checkpoint (its seq_end).",
                value=cp["seq_end"],
            )
        segments, size, free = _archive_stats(d)
        yield GaugeMetricFamily("auditd_py_segments", "Segment files.", value=segments)
        yield GaugeMetricFamily("auditd_py_archive_bytes", "Bytes in segment files.", value=size)
        st = d.sealer.stats if d.sealer is not None else None
        yield CounterMetricFamily(
            "auditd_py_retention_deletions",
            "Segments deleted by retention by this process (each one sealed).",
            value=st.retention_deleted if st is not None else 0,
        )
        yield CounterMetricFamily(
            "auditd_py_retention_deleted_bytes",
            "Bytes of segment files deleted by retention by this process.",
            value=st.retention_deleted_bytes if st is not None else 0,
        )
        yield CounterMetricFamily(
            "auditd_py_disk_full_events",
            "Times a write to the archive was refused for lack of space.",
            value=st.disk_full_events if st is not None else 0,
        )
        yield GaugeMetricFamily(
            "auditd_py_disk_level",
            "Disk pressure: 0 ok, 1 below space_left, 2 below admin_space_left, 3 full.",
            value=int(d.disk.level) if d.disk is not None else 0,
        )
        yield GaugeMetricFamily(
            "auditd_py_reading_suspended",
            "1 while the disk action 'suspend' (or a full disk) holds the sources.",
            value=1 if _suspended(d) else 0,
        )
        yield GaugeMetricFamily(
            "auditd_py_unwritten_bytes",
            "Sealed bytes held in memory because the file system refused them.",
            value=d.writer.unwritten if d.writer is not None else 0,
        )
        yield GaugeMetricFamily(
            "auditd_py_disk_free_bytes",
            "Bytes available to the daemon on the archive's file system.",
            value=free,
        )
        if d.forwarders:
            lag = GaugeMetricFamily(
                "auditd_py_forward_lag_records",
                "Sealed records a forwarder has not had acknowledged yet.",
                labels=["target", "kind"],
            )
            up = GaugeMetricFamily(
                "auditd_py_forward_up",
                "1 while a forwarder's last attempt succeeded, 0 during an outage.",
                labels=["target", "kind"],
            )
            sent = CounterMetricFamily(
                "auditd_py_forward_delivered",
                "Messages or objects a forwarder had acknowledged.",
                labels=["target", "kind"],
            )
            fails = CounterMetricFamily(
                "auditd_py_forward_failures",
                "Failed attempts (each retried with backoff).",
                labels=["target", "kind"],
            )
            for r in d.forwarders:
                labels = [r.fwd.name, r.fwd.kind]
                lag.add_metric(labels, r.fwd.lag().get("records", 0))
                up.add_metric(labels, 0 if r.stats.failing_since is not None else 1)
                sent.add_metric(labels, r.stats.delivered)
                fails.add_metric(labels, r.stats.failures)
            yield from (lag, up, sent, fails)
        yield GaugeMetricFamily(
            "auditd_py_up",
            "1 while the daemon runs, 0 once it is stopping.",
            value=0 if d.stopping else 1,
        )


def registry_for(d: Daemon) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DaemonCollector(d))
    ProcessCollector(registry=reg)  # process_cpu_seconds_total, memory, open fds
    return reg


def make_app(d: Daemon, registry: CollectorRegistry) -> WSGIApplication:
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/health":
            try:
                ok, doc = health(d)
            except Exception as exc:  # report it rather than drop the connection
                ok, doc = False, {"status": "unhealthy", "reasons": [f"health check: {exc!r}"]}
            body = orjson.dumps(doc) + b"\n"
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [b"" if method == "HEAD" else body]
        if path in ("/metrics", "/"):
            out: Iterable[bytes] = metrics(environ, start_response)
            return out
        body = b"not found: try /metrics or /health\n"
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would flood the journal."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the address's FQDN: a DNS query at start.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class MetricsServer:
    """The HTTP server, on its own thread (it wakes twice a second when idle)."""

    def __init__(self, listen: str, app: WSGIApplication) -> None:
        host, port = split_listen(listen)
        try:
            family, _, _, _, addr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise AuditdError(f"metrics.listen {listen}: cannot resolve {host}: {exc}") from exc
        cls = type("_Server", (_Server,), {"address_family": family})
        try:
            self.server: WSGIServer = cls(addr[:2], _QuietHandler)
        except OSError as exc:
            raise AuditdError(
                f"metrics.listen {listen}: cannot listen: {exc.strerror or exc}"
            ) from exc
        self.server.set_app(app)
        self.url = f"http://{listen}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.5,), name="auditd-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def serve(d: Daemon, listen: str) -> MetricsServer:
    srv = MetricsServer(listen, make_app(d, registry_for(d)))
    srv.start()
    return srv


# ---------------------------------------------------------------- the client side


def url_for(listen: str) -> str:
    """The URL to reach a daemon listening on ``listen`` (a wildcard → loopback)."""
    host, port = split_listen(listen)
    if host in ("0.0.0.0", ""):  # noqa: S104 - mapping a wildcard to loopback, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fetch_health(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, document) from a daemon's ``/health``; 503 answers are documents too."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"invalid URL {url!r}: use http://HOST:PORT")
    target = base + "/health"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as r:  # noqa: S310 - http(s) only
            code, body = int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AuditdError(f"cannot reach the daemon at {base}: {reason}") from exc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AuditdError(f"{target} answered {code} without a JSON document") from exc
    if not isinstance(doc, dict):
        raise AuditdError(f"{target} answered {code} without a JSON object")
    return code, doc


__all__ = [
    "DaemonCollector",
    "MetricsServer",
    "fetch_health",
    "health",
    "registry_for",
    "serve",
    "url_for",
]
