"""What dashboards and alerts rely on: /metrics of a real daemon checked by
``promtool check metrics``, the alert rules of contrib/ checked and unit-tested
by ``promtool``, and the dashboard and the rules naming only metrics that a
daemon exposes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auditd_py import __version__
from auditd_py.daemon.metrics import metrics
from auditd_py.daemon.status import Snapshot
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
CONTRIB = REPO / "contrib"
RULES = CONTRIB / "prometheus" / "auditd-py.rules.yml"
RULE_TESTS = CONTRIB / "prometheus" / "auditd-py.rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "auditd-py.json"

FIRST_SCRAPE = (
    "auditd_py_build_info",
    "auditd_py_up",
    "auditd_py_config_last_reload_successful",
    "auditd_py_config_last_reload_success_timestamp_seconds",
    "auditd_py_records_read_total",
    "auditd_py_records_sealed_total",
    "auditd_py_records_dropped_total",
    "auditd_py_parse_errors_total",
    "auditd_py_bytes_sealed_total",
    "auditd_py_queue_depth",
    "auditd_py_seal_latency_seconds_bucket",
    "auditd_py_segment_rotations_total",
    "auditd_py_epoch",
    "auditd_py_last_checkpoint_timestamp_seconds",
    "auditd_py_last_checkpoint_seq",
    "auditd_py_epoch_interval_seconds",
    "auditd_py_retention_deleted_segments_total",
    "auditd_py_disk_full_writes_refused_total",
    "auditd_py_disk_level",
    "auditd_py_disk_free_bytes",
    "auditd_py_self_verify_ok",
    "auditd_py_self_verify_failures_total",
)
PROMTOOL = shutil.which("promtool") or "promtool"


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def scrape(port: int) -> tuple[bytes, str]:
    """(body, Server header) of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read(), str(r.headers.get("Server"))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text.decode())
        for s in fam.samples
    }


@pytest.mark.integration
def test_a_running_daemons_metrics_pass_promtool(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    doc = configs.daemon(
        arc, metrics={"listen": f"127.0.0.1:{port}"}, sources=[configs.file_source(logs)]
    )
    cfg = configs.write(tmp_path / "d.yaml", doc)
    base = cfg.read_text()
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        body, server = scrape(port)  # the first scrape: every family is there
        assert server == "auditd-py"  # no Python version for a scanner
        got = samples(body)
        names = {name for name, _ in got}
        missing = [n for n in FIRST_SCRAPE if n not in names]
        assert not missing, missing
        r = promtool("check", "metrics", stdin=body)
        assert r.returncode == 0 and r.stdout + r.stderr == b"", r.stdout + r.stderr
        info = [labels for name, labels in got if name == "auditd_py_build_info"]
        assert info == [(("format", "1"), ("version", __version__))]
        levels = {dict(lb)["level"]: v for (n, lb), v in got.items() if n == "auditd_py_disk_level"}
        assert levels == {"ok": 1, "low": 0, "admin": 0, "full": 0}
        assert got[("auditd_py_config_last_reload_successful", ())] == 1
        loaded_at = got[("auditd_py_config_last_reload_success_timestamp_seconds", ())]
        assert loaded_at > 0

        # a reload the daemon refuses (the epoch cannot change while running), then one it takes
        cfg.write_text(base.replace("epoch_interval: 1h", "epoch_interval: 2h"))
        d.proc.send_signal(signal.SIGHUP)
        key = ("auditd_py_config_last_reload_successful", ())
        assert wait_for(lambda: samples(scrape(port)[0])[key] == 0, 10)
        now = samples(scrape(port)[0])
        assert now[("auditd_py_config_last_reload_success_timestamp_seconds", ())] == loaded_at
        cfg.write_text(base)
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: samples(scrape(port)[0])[key] == 1, 10)
        later = samples(scrape(port)[0])
        assert later[("auditd_py_config_last_reload_success_timestamp_seconds", ())] > loaded_at
        body, _ = scrape(port)
        r = promtool("check", "metrics", stdin=body)
        assert r.returncode == 0 and r.stdout + r.stderr == b"", r.stdout + r.stderr
    finally:
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]


@pytest.mark.integration
def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0 and b"SUCCESS: 13 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", str(RULE_TESTS))
    assert r.returncode == 0 and b"SUCCESS" in r.stdout, r.stdout + r.stderr


def _named(text: str) -> set[str]:
    return set(re.findall(r"\b(auditd_py_[a-z_]+)\b", text))


def exported() -> set[str]:
    """Every sample name /metrics has, with a forwarder configured (from one snapshot)."""
    fwd = {"target": "t", "kind": "syslog", "lag": {"records": 0}, "delivered": 0,
           "failures": 0, "failing_for_seconds": None, "last_error": None}  # fmt: skip
    src = {"name": "app", "type": "file", "running": True, "healthy": True, "reason": "",
           "records_read": 0, "records_sealed": 0, "parse_errors": 0, "dropped": 0,
           "records_per_second": None}  # fmt: skip
    snap = Snapshot.from_doc({"forward": [fwd], "sources": [src]})
    return {s.name for fam in metrics(snap) for s in fam.samples} | {
        fam.name for fam in metrics(snap)
    }


def test_dashboard_rules_and_docs_name_only_exported_metrics() -> None:
    dash = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs.append(dash["templating"]["list"][1]["query"]["query"])
    have = exported()
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for where, names in (
        ("dashboard", _named("\n".join(exprs))),
        ("rules", _named(RULES.read_text())),
        ("docs", _named("\n".join(p.read_text() for p in docs))),
    ):
        unknown = sorted(names - have)
        assert not unknown, (where, unknown)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("ingest", "sealing lag", "dropped", "disk level", "forwarding lag",
                  "checkpoint age", "self-verification"):  # fmt: skip
        assert topic in titles, topic
