"""Observability: Prometheus metrics, /health, ``auditd-py status``, sd_notify and
the watchdog, against a real daemon subprocess (and a real NOTIFY_SOCKET).

A stuck seal loop is made by holding back its queue in an in-process daemon
(:class:`Stalling`): its heartbeat goes stale exactly as when its thread hangs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auditd_py import config
from auditd_py.daemon.observe import url_for
from auditd_py.daemon.queue import Item
from auditd_py.daemon.rates import Rates
from auditd_py.daemon.sealloop import SealLoop
from auditd_py.daemon.supervisor import Daemon as InProcessDaemon
from auditd_py.daemon.systemd import notify, notify_socket, watchdog_seconds
from auditd_py.errors import ConfigError
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import (
    CLI,
    Daemon,
    Notify,
    free_port,
    get_health,
    show,
    verify_both,
    wait_for,
)

integration = pytest.mark.integration
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def write_config(
    tmp: Path, arc: Arc, port: int, sources: list[dict[str, Any]], *, epoch: str = "1s"
) -> Path:
    doc = configs.daemon(
        arc, epoch_interval=epoch, metrics={"listen": f"127.0.0.1:{port}"}, sources=sources
    )
    return configs.write(tmp / "daemon.yaml", doc)


def status(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, "status", *args], capture_output=True, check=False, timeout=30)


EXPECTED = (
    "auditd_py_records_read_total",
    "auditd_py_records_sealed_total",
    "auditd_py_bytes_sealed_total",
    "auditd_py_parse_errors_total",
    "auditd_py_records_dropped_total",
    "auditd_py_queue_depth",
    "auditd_py_seal_latency_seconds_count",
    "auditd_py_seal_latency_seconds_sum",
    "auditd_py_seal_latency_seconds_bucket",
    "auditd_py_epoch",
    "auditd_py_segment_rotations_total",
    "auditd_py_rotation_pause_max_seconds",
    "auditd_py_last_checkpoint_timestamp_seconds",
    "auditd_py_last_checkpoint_seq",
    "auditd_py_segments",
    "auditd_py_archive_bytes",
    "auditd_py_retention_deleted_segments_total",
    "auditd_py_retention_deleted_bytes_total",
    "auditd_py_disk_full_writes_refused_total",
    "auditd_py_disk_level",
    "auditd_py_reading_suspended",
    "auditd_py_unwritten_bytes",
    "auditd_py_disk_free_bytes",
    "auditd_py_up",
    "auditd_py_source_up",
    "process_cpu_seconds_total",
)


# ---------------------------------------------------------------- metrics and status


@integration
def test_metrics_move_as_lines_are_sealed(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    cfg = write_config(tmp_path, arc, port, [configs.file_source(logs)])
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        m0 = scrape(port)
        names = {name for name, _ in m0}
        for name in EXPECTED:
            assert name in names, name
        assert metric(m0, "auditd_py_records_read_total", source="app") == 0
        assert metric(m0, "auditd_py_records_sealed_total", source="app") == 0
        assert metric(m0, "auditd_py_up") == 1
        assert metric(m0, "auditd_py_source_up", source="app", type="file") == 1
        assert metric(m0, "auditd_py_retention_deleted_segments_total") == 0
        assert (metric(m0, "auditd_py_disk_free_bytes") or 0) > 0
        assert (metric(m0, "auditd_py_segments") or 0) >= 1
        assert (metric(m0, "auditd_py_archive_bytes") or 0) > 0
        assert not any(n.startswith("auditd_py_forward_") for n in names)  # no target

        (logs / "app.log").write_bytes(b"".join(b"line %d\n" % i for i in range(300)))

        def sealed() -> bool:
            m = scrape(port)
            return metric(m, "auditd_py_records_sealed_total", source="app") == 300

        assert wait_for(sealed)
        epoch0 = m0[("auditd_py_epoch", ())]
        # two more 1 s epochs, within the 2.5 s they take
        assert wait_for(lambda: scrape(port)[("auditd_py_epoch", ())] >= epoch0 + 2, 2.5)
        m1 = scrape(port)
        assert metric(m1, "auditd_py_records_read_total", source="app") == 300
        assert metric(m1, "auditd_py_bytes_sealed_total")
        assert m1[("auditd_py_bytes_sealed_total", ())] > m0[("auditd_py_bytes_sealed_total", ())]
        assert m1[("auditd_py_epoch", ())] >= m0[("auditd_py_epoch", ())] + 2
        for name in (
            "auditd_py_last_checkpoint_timestamp_seconds",
            "auditd_py_last_checkpoint_seq",
        ):
            assert m1[(name, ())] > m0[(name, ())]
        assert m1[("auditd_py_last_checkpoint_seq", ())] >= 300
        count = m1[("auditd_py_seal_latency_seconds_count", ())]
        assert count > m0[("auditd_py_seal_latency_seconds_count", ())]
        assert m1[("auditd_py_seal_latency_seconds_bucket", (("le", "+Inf"),))] == count
        assert 0 < m1[("auditd_py_seal_latency_seconds_sum", ())] < 5 * count
        assert m1[("auditd_py_queue_depth", ())] == 0
        assert (metric(m1, "auditd_py_records_sealed_total", source="auditd-py") or 0) > 0

        code, doc = get_health(port)
        assert code == 200 and doc["status"] == "ok" and doc["reasons"] == [], doc
        (src,) = doc["sources"]
        assert src["name"] == "app" and src["healthy"] and src["records_sealed"] == 300

        r = status("--json", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        st = orjson.loads(r.stdout)
        for key in (
            "status",
            "sources",
            "positions",
            "records_per_second",
            "last_checkpoint",
            "disk_free_bytes",
            "queue_depth",
            "segments",
            "epoch",
            "pid",
        ):
            assert key in st, key
        assert st["status"] == "ok" and st["pid"] == d.proc.pid
        assert st["positions"] >= 1
        assert st["last_checkpoint"]["epoch"] >= 1
        assert st["disk_free_bytes"] > 0
        assert st["sources"][0]["records_read"] == 300

        r = status("--url", f"http://127.0.0.1:{port}")
        assert r.returncode == 0, r.stderr
        text = r.stdout.decode()
        assert "healthy" in text and "source app (file): ok" in text
        assert "last checkpoint: epoch" in text and "free" in text
    finally:
        code = d.stop()
    assert code == 0
    with pytest.raises(urllib.error.URLError):
        scrape(port)  # the server is gone with the daemon
    verify_both(arc, "--require-sealed")


@integration
def test_health_is_503_while_a_source_is_unhealthy(tmp_path: Path) -> None:
    """A journald source whose directory does not exist (yet): a real, recoverable failure."""
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    jdir = tmp_path / "journal"
    port = free_port()
    sources = [configs.file_source(logs), configs.journald_source(jdir)]
    cfg = write_config(tmp_path, arc, port, sources, epoch="1m")
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        code, doc = get_health(port)
        assert code == 503 and doc["status"] == "unhealthy"
        assert any(r.startswith("source journal: ") and str(jdir) in r for r in doc["reasons"])
        assert not any("app" in r for r in doc["reasons"])
        m = scrape(port)
        assert metric(m, "auditd_py_source_up", source="journal", type="journald") == 0
        assert metric(m, "auditd_py_source_up", source="app", type="file") == 1

        r = status("--json", "--config", str(cfg))
        assert r.returncode == 1
        st = orjson.loads(r.stdout)
        assert st["status"] == "unhealthy" and st["http_status"] == 503
        assert [s["healthy"] for s in st["sources"]] == [True, False]
        r = status("--config", str(cfg))
        assert (
            r.returncode == 1
            and b"UNHEALTHY" in r.stdout
            and b"problem: source journal" in (r.stdout)
        )

        jdir.mkdir()  # the source retries with back-off and recovers
        assert wait_for(lambda: get_health(port)[0] == 200, 40), get_health(port)
    finally:
        assert d.stop() == 0


class Stalling:
    """The seal loop's queue, held back while :attr:`stalled` is set (until the loop stops).

    Put in place of a running daemon's ``sealer.queue``: the loop's heartbeat goes
    stale exactly as when its thread is stuck, while sources keep queueing.
    """

    def __init__(self, loop: SealLoop) -> None:
        self.loop = loop
        self.inner = loop.queue
        self.stalled = threading.Event()
        self.holding = threading.Event()
        """Set while the loop is held here (nothing taken from the queue after that)."""

    def get_timed(self, timeout: float) -> list[tuple[float, list[Item]]]:
        while self.stalled.is_set() and not self.loop.stopping:
            self.holding.set()
            time.sleep(0.02)
        self.holding.clear()
        return self.inner.get_timed(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class InProcess:
    """The real daemon in a thread, its sd_notify messages captured."""

    def __init__(self, cfg: Path, env: dict[str, str]) -> None:
        self.messages: list[str] = []
        self.d = InProcessDaemon(config.load(cfg), notify_fn=self._notify, env=env)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _notify(self, state: str) -> bool:
        self.messages.append(state)
        return True

    def _run(self) -> None:
        self.code = self.d.run()

    def start(self) -> Stalling:
        self.thread.start()
        assert wait_for(lambda: any("READY=1" in m for m in self.messages), 20)
        assert self.d.sealer is not None
        stalling = Stalling(self.d.sealer)
        self.d.sealer.queue = stalling  # type: ignore[assignment]
        return stalling

    def during(self, seconds: float) -> list[str]:
        n = len(self.messages)
        time.sleep(seconds)
        return self.messages[n:]

    def stop(self) -> int | None:
        self.d.flags.stop = True
        self.d.wake.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.code


@integration
def test_stuck_sealer_stops_the_watchdog_and_fails_health(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    cfg = write_config(tmp_path, arc, port, [configs.file_source(logs)])
    d = InProcess(cfg, env={"WATCHDOG_USEC": "2000000"})
    stall = d.start()
    try:
        ok = d.during(2.0)
        assert sum("WATCHDOG=1" in m for m in ok) >= 2, ok  # every 0.5 s with a 2 s watchdog
        assert any("STATUS=" in m and "records/s" in m for m in ok)
        assert get_health(port)[0] == 200

        stall.stalled.set()
        # the heartbeat goes stale after 1 s (half of WATCHDOG_USEC): no ping from then on
        assert wait_for(lambda: any("sealer stalled" in m for m in d.messages), 10)
        stuck = d.during(3.0)
        assert stuck and not any("WATCHDOG=1" in m for m in stuck), stuck
        assert any("sealer stalled" in m for m in stuck), stuck
        assert stall.holding.is_set()
        (logs / "app.log").write_bytes(b"".join(b"during %d\n" % i for i in range(50)))

        def stuck_health() -> bool:
            code, doc = get_health(port)
            reasons = " | ".join(doc["reasons"])
            return code == 503 and "no progress" in reasons and "last checkpoint" in reasons

        assert wait_for(stuck_health, 10), get_health(port)

        def read_all() -> bool:  # the tailer may wake a poll interval after the write
            return metric(scrape(port), "auditd_py_records_read_total", source="app") == 50

        assert wait_for(read_all, 10), scrape(port)
        m = scrape(port)
        assert metric(m, "auditd_py_records_sealed_total", source="app") == 0
        assert (metric(m, "auditd_py_queue_depth") or 0) >= 50
        assert d.thread.is_alive()

        stall.stalled.clear()
        resumed = d.during(2.0)
        assert any("WATCHDOG=1" in m for m in resumed), resumed
        assert wait_for(lambda: get_health(port)[0] == 200, 10), get_health(port)
        assert wait_for(
            lambda: metric(scrape(port), "auditd_py_records_sealed_total", source="app") == 50, 10
        ), scrape(port)
    finally:
        stall.stalled.clear()
        code = d.stop()
    assert code == 0
    assert any("STOPPING=1" in m for m in d.messages)
    events = [r["event"] for r in show(arc, "--meta")]
    assert "sealer.stalled" in events and "sealer.resumed" in events
    assert [r["message"] for r in show(arc)] == [f"during {i}" for i in range(50)]
    verify_both(arc, "--require-sealed")


@integration
def test_stopping_while_the_sealer_is_stuck(tmp_path: Path) -> None:
    """Stopping while the seal loop is held back: what was read is sealed, the exit is clean."""
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path, arc, free_port(), [configs.file_source(logs)])
    d = InProcess(cfg, env={})
    stall = d.start()
    stall.stalled.set()
    try:
        assert stall.holding.wait(5)
        (logs / "app.log").write_bytes(b"".join(b"x %d\n" % i for i in range(20)))
        assert wait_for(lambda: d.d.queue.read_counts().get("app", 0) == 20, 10)
        assert d.d.sealer is not None and d.d.sealer.stats.sealed_by_source.get("app", 0) == 0
    finally:
        code = d.stop()
    assert code == 0
    assert [r["message"] for r in show(arc)] == [f"x {i}" for i in range(20)]
    verify_both(arc, "--require-sealed")


@integration
def test_metrics_port_in_use_fails_the_start_clearly(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, arc, port, [configs.file_source(logs)])
        r = subprocess.run(
            [*CLI, "run", "--config", str(cfg)], capture_output=True, check=False, timeout=30
        )
    assert r.returncode == 2, r.stderr
    assert b"metrics.listen" in r.stderr and b"cannot listen" in r.stderr
    assert b"Traceback" not in r.stderr
    verify_both(arc)  # abandoned cleanly: the next start recovers


@integration
def test_status_without_a_daemon(tmp_path: Path) -> None:
    r = status("--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert r.returncode == 2 and b"cannot reach the daemon" in r.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"archive:\n  path: {tmp_path}\n")
    r = status("--config", str(cfg))
    assert r.returncode == 2 and b"no metrics: section" in r.stderr


def test_two_daemons_in_one_process_have_their_own_registries(tmp_path: Path) -> None:
    """Each daemon's metrics come from its own registry, not prometheus_client's global one."""
    daemons: list[InProcessDaemon] = []
    threads: list[threading.Thread] = []
    ports = []
    try:
        for i in range(2):
            root = tmp_path / f"d{i}"
            root.mkdir()
            arc = Arc(root, random=None)
            logs = root / "logs"
            logs.mkdir()
            (logs / "x.log").write_bytes(b"x\n" * (i + 1))
            port = free_port()
            ports.append(port)
            cfg = write_config(
                root, arc, port, [configs.file_source(logs, name=f"src{i}")], epoch="1m"
            )
            dm = InProcessDaemon(config.load(cfg), notify_fn=lambda _s: False, env={})
            daemons.append(dm)
            t = threading.Thread(target=dm.run, daemon=True)
            t.start()
            threads.append(t)
        for i, port in enumerate(ports):

            def done(p: int = port, i: int = i) -> bool:
                with contextlib.suppress(OSError):
                    m = scrape(p)
                    return metric(m, "auditd_py_records_sealed_total", source=f"src{i}") == i + 1
                return False

            assert wait_for(done, 20)
            m = scrape(port)
            other = f"src{1 - i}"
            assert metric(m, "auditd_py_records_read_total", source=other) is None
    finally:
        for dm in daemons:
            dm.flags.stop = True
            dm.wake.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)


# ---------------------------------------------------------------- units


def test_metrics_config_is_loopback_unless_allowed() -> None:
    base = "archive: {path: /x}\n"
    assert config.load_text(base + "metrics: {}\n").metrics is not None
    assert config.load_text(base).metrics is None
    m = config.load_text(base + "metrics: {listen: '[::1]:9464'}\n").metrics
    assert m is not None and m.listen == "[::1]:9464"
    for addr in ("0.0.0.0:9464", "192.0.2.1:9464", "metrics.example:9464", "'[::]:9464'"):
        with pytest.raises(ConfigError, match=r"metrics\.listen: .*allow_remote"):
            config.load_text(base + f"metrics: {{listen: {addr}}}\n")
        config.load_text(base + f"metrics: {{listen: {addr}, allow_remote: true}}\n")
    for bad in ("9464", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1"):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            config.load_text(base + f"metrics: {{listen: '{bad}'}}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        config.load_text(base + "metrics: {listn: 127.0.0.1:1}\n")
    assert url_for("0.0.0.0:9") == "http://127.0.0.1:9"
    assert url_for("[::1]:9") == "http://[::1]:9"


def test_watchdog_seconds() -> None:
    assert watchdog_seconds({}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "x"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 4
    assert watchdog_seconds({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None


@pytest.mark.parametrize("via", ["systemd-python", "fallback"])
def test_notify_reaches_a_real_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    n = Notify(tmp_path / "n.sock")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(n.path))
        send = notify if via == "systemd-python" else notify_socket
        assert send("READY=1\nSTATUS=hello")
        assert n.wait_for("STATUS=hello", 2) and "READY=1" in n.messages[0]
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not send("WATCHDOG=1")
    finally:
        n.close()


def test_rates_over_a_window() -> None:
    r = Rates(window=10.0)
    assert r.rates() == (None, {})
    r.sample(0.0, 0, {})
    r.sample(1.0, 100, {"a": 100})
    total, by = r.rates()
    assert total == 100.0 and by == {"a": 100.0}
    for t in range(2, 30):
        r.sample(float(t), 100 + 10 * (t - 1), {"a": 100 + 10 * (t - 1)})
    total, by = r.rates()
    assert total == pytest.approx(10.0) and by["a"] == pytest.approx(10.0)
