"""SIGHUP reloads and SIGUSR1 rotation of a running daemon, while lines keep coming.

A writer thread appends numbered lines to two files the whole time; the daemon
is sent SIGHUP with an unchanged configuration, one adding a source, one
changing a source, one removing it, invalid ones, and one adding it back. It
keeps running, every number is in the archive exactly once and in order, the
meta stream tells what happened, and the archive verifies.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from auditd_py.chain.encoding import Fields
from auditd_py.store.writer import ArchiveWriter
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon, free_port, get_health, show, verify_both, wait_for


class Appender:
    """Appends ``<tag> <n>`` lines to files, a few every few milliseconds."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.counts = dict.fromkeys(files, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for tag, path in self.files.items():
                n = self.counts[tag]
                with path.open("ab") as fh:
                    fh.write(b"".join(b"%s %d\n" % (tag.encode(), n + i) for i in range(3)))
                self.counts[tag] = n + 3
            time.sleep(0.005)

    def __enter__(self) -> Appender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def meta_events(arc: Arc, name: str) -> list[dict[str, Any]]:
    return [r for r in show(arc, "--meta") if r["event"] == name]


def wait_meta(arc: Arc, name: str, count: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait for the ``count``-th meta event ``name`` and return its attrs."""
    assert wait_for(lambda: len(meta_events(arc, name)) >= count, timeout), [
        r["event"] for r in show(arc, "--meta")
    ]
    attrs = meta_events(arc, name)[count - 1]["attrs"]
    assert isinstance(attrs, dict)
    return attrs


def config_text(
    arc: Arc,
    logs: Path,
    *,
    extra: bool,
    app_poll: str = "100ms",
    metrics_port: int | None = None,
    syslog_port: int | None = None,
) -> str:
    """The YAML text (tests edit it to make it wrong) of a daemon reading ``logs/a.log``
    (and ``b.log`` with ``extra``, a syslog port with ``syslog_port``)."""
    sources = [configs.file_source(logs, "a.log", poll_interval=app_poll)]
    if extra:
        sources.append(configs.file_source(logs, "b.log", name="extra"))
    if syslog_port is not None:
        sources.insert(0, configs.syslog_source(f"udp://127.0.0.1:{syslog_port}", name="net"))
    doc = configs.daemon(arc, epoch_interval="1s", sources=sources)
    if metrics_port is not None:
        doc["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.integration
def test_sighup_and_sigusr1_while_lines_keep_coming(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = tmp_path / "daemon.yaml"
    base = config_text(arc, logs, extra=False)
    cfg.write_text(base)
    d = Daemon(tmp_path, cfg)
    loaded, rejected = 1, 0  # config.loaded is logged once at start

    def hup(text: str) -> None:
        cfg.write_text(text)
        d.proc.send_signal(signal.SIGHUP)

    def reloaded() -> dict[str, Any]:
        nonlocal loaded
        loaded += 1
        attrs = wait_meta(arc, "config.loaded", loaded)
        assert d.proc.poll() is None
        return attrs

    def refused() -> str:
        nonlocal rejected
        rejected += 1
        attrs = wait_meta(arc, "config.rejected", rejected)
        assert d.proc.poll() is None
        return str(attrs["error"])

    try:
        d.ready()
        with Appender({"a": logs / "a.log", "b": logs / "b.log"}) as app:
            time.sleep(0.5)

            # (a) unchanged
            hup(base)
            attrs = reloaded()
            assert attrs["added"] == attrs["removed"] == attrs["changed"] == []
            assert attrs["sources"] == ["app"] and len(str(attrs["config_hash"])) == 64
            assert d.notify.wait_for("RELOADING=1", 5)
            (reloading,) = [m for m in d.notify.messages if "RELOADING=1" in m]
            assert "MONOTONIC_USEC=" in reloading
            assert d.notify.wait_for("READY=1", 5)

            # (b) a second file source
            hup(config_text(arc, logs, extra=True))
            attrs = reloaded()
            assert attrs["added"] == ["extra"] and attrs["changed"] == []
            time.sleep(0.5)

            # a changed source: stopped, restarted from its sealed positions
            hup(config_text(arc, logs, extra=True, app_poll="50ms"))
            attrs = reloaded()
            assert attrs["changed"] == ["app"] and attrs["added"] == attrs["removed"] == []
            time.sleep(0.5)

            # (c) removed again; b.log keeps growing meanwhile
            hup(config_text(arc, logs, extra=False, app_poll="50ms"))
            attrs = reloaded()
            assert attrs["removed"] == ["extra"]
            time.sleep(0.5)

            # (d) invalid: a typo, then bad YAML, then a setting a reload cannot change
            hup(base.replace("poll_interval", "pol_interval"))
            err = refused()
            assert "pol_interval" in err and "unknown key" in err
            hup(base + "  - [\n")
            assert "invalid YAML" in refused()
            hup(base.replace("epoch_interval: 1s", "epoch_interval: 2s"))
            assert "sealing.epoch_interval" in refused()
            hup(base.replace(str(arc.layout.root), str(tmp_path / "elsewhere")))
            assert "archive.path cannot change" in refused()

            # the source comes back and continues b.log where it stopped
            hup(config_text(arc, logs, extra=True))
            attrs = reloaded()
            assert attrs["added"] == ["extra"] and attrs["changed"] == ["app"]

            # SIGUSR1: a new segment
            segments = len(arc.layout.segment_names())
            d.proc.send_signal(signal.SIGUSR1)
            assert wait_for(lambda: len(arc.layout.segment_names()) == segments + 1)
            time.sleep(0.5)
            app.stop()
            counts = dict(app.counts)

        def complete() -> bool:
            recs = show(arc)
            return (
                sum(r["source"] == "app" for r in recs) >= counts["a"]
                and sum(r["source"] == "extra" for r in recs) >= counts["b"]
            )

        assert wait_for(complete, 30)
        assert d.proc.poll() is None
    finally:
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-3000:]
    recs = show(arc)
    assert [r["message"] for r in recs if r["source"] == "app"] == [
        f"a {i}" for i in range(counts["a"])
    ]
    assert [r["message"] for r in recs if r["source"] == "extra"] == [
        f"b {i}" for i in range(counts["b"])
    ]
    events = [r["event"] for r in show(arc, "--meta")]
    for ev in ("source.added", "source.restarted", "source.removed", "segment.rotated"):
        assert ev in events, ev
    assert events.count("config.loaded") == loaded and events.count("config.rejected") == rejected
    assert sum(m.count("READY=1") for m in d.notify.messages) == 1 + (loaded - 1) + rejected
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_a_source_that_cannot_start_on_reload_is_reported_and_retried(tmp_path: Path) -> None:
    """A syslog source whose port is taken: the reload goes on, /health says why, the
    next SIGHUP starts it once the port is free."""
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    mport, sport = free_port(), free_port()
    cfg = tmp_path / "daemon.yaml"
    base = config_text(arc, logs, extra=False, metrics_port=mport)
    with_syslog = config_text(arc, logs, extra=False, metrics_port=mport, syslog_port=sport)
    cfg.write_text(base)
    d = Daemon(tmp_path, cfg)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        d.ready()
        busy.bind(("127.0.0.1", sport))
        cfg.write_text(with_syslog)
        d.proc.send_signal(signal.SIGHUP)
        attrs = wait_meta(arc, "config.loaded", 2)
        assert attrs["added"] == ["net"] and attrs["failed"] == ["net"]
        errors = meta_events(arc, "source.error")
        assert errors and "net" in str(errors[-1]["message"])
        code, doc = get_health(mport)
        assert code == 503
        assert any(r.startswith("source net: not running") for r in doc["reasons"]), doc
        assert d.proc.poll() is None

        busy.close()
        d.proc.send_signal(signal.SIGHUP)  # the same file: the failed source is retried
        attrs = wait_meta(arc, "config.loaded", 3)
        assert attrs["retried"] == ["net"] and attrs["failed"] == []
        assert wait_for(lambda: get_health(mport)[0] == 200, 10), get_health(mport)
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(sport), "-d", "hello"], check=True)
        assert wait_for(lambda: any(r["source"] == "net" for r in show(arc)))
    finally:
        busy.close()
        code = d.stop()
    assert code == 0
    verify_both(arc, "--require-sealed")


# ---------------------------------------------------------------- ArchiveWriter.rotate_segment


def test_rotate_segment_checkpoints_and_continues_in_a_new_segment(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer()
    for i in range(5):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "t", b"before %d" % i))
    first = w.segment
    cp = w.rotate_segment("test")
    assert cp.seq_end == 6 and w.segment != first  # 5 records and the header
    for i in range(5):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "t", b"after %d" % i))
    w.close()
    assert [p.name for p in arc.segment_paths()] == [first, w.segment]
    report = arc.verify(require_sealed=True)
    assert report.segments == 2 and report.checkpoints == 3
    recs = show(arc, "--all")
    rotated = [r for r in recs if r.get("event") == "segment.rotated"]
    assert len(rotated) == 1
    attrs = rotated[0]["attrs"]
    assert isinstance(attrs, dict)
    assert attrs["prev_segment"] == first and attrs["checkpoint"] == cp.epoch
    assert attrs["reason"] == "test"


def test_crash_right_after_rotate_segment_recovers(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer()
    w.append(Fields(arc.clock.now_ns(), "t", b"one"))
    w.rotate_segment("test")
    w.append(Fields(arc.clock.now_ns(), "t", b"two"))
    w.abandon()  # as a crash would
    w2 = ArchiveWriter.open(arc.layout, arc.clock)
    w2.append(Fields(arc.clock.now_ns(), "t", b"three"))
    w2.close()
    assert [r["message"] for r in show(arc)] == ["one", "two", "three"]
    assert arc.verify(require_sealed=True).segments == 3
