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

import socket
import socketserver
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from auditd_py.config import split_listen
from auditd_py.daemon.metrics import metrics
from auditd_py.daemon.status import Snapshot
from auditd_py.errors import AuditdError, UsageError

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment


# ---------------------------------------------------------------- Prometheus


SERVER = "auditd-py"
"""The ``Server`` header: no Python or library version for a scanner to match."""

Take = Callable[[], Snapshot]
"""Takes the running daemon's status snapshot (:func:`~auditd_py.daemon.snapshot.snapshot`)."""


class DaemonCollector(Collector):
    """Takes a snapshot when scraped and renders it (:func:`~auditd_py.daemon.metrics.metrics`)."""

    def __init__(self, take: Take) -> None:
        self.take = take

    def collect(self) -> Iterable[Metric]:
        return metrics(self.take())


def registry_for(take: Take) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DaemonCollector(take))
    ProcessCollector(registry=reg)  # process_cpu_seconds_total, memory, open fds
    return reg


def make_app(take: Take, registry: CollectorRegistry) -> WSGIApplication:
    prometheus = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, respond: StartResponse) -> Iterable[bytes]:
        def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            # our Server header, so that wsgiref does not send its own with Python's version
            return respond(status, [*headers, ("Server", SERVER)], *exc)

        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/health":
            try:
                snap = take()
                ok, doc = snap.healthy, snap.to_doc()
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
            out: Iterable[bytes] = prometheus(environ, start_response)
            return out
        body = b"not found: try /metrics or /health\n"
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would flood the journal."""

    def version_string(self) -> str:
        """``Server: auditd-py`` on errors answered before the app runs, too."""
        return SERVER


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


def serve(take: Take, listen: str) -> MetricsServer:
    """Serve ``/metrics`` and ``/health`` on ``listen``, each request from a fresh snapshot."""
    srv = MetricsServer(listen, make_app(take, registry_for(take)))
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
    "registry_for",
    "serve",
    "url_for",
]
