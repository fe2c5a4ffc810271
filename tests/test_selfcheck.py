"""The daemon verifies itself (issue 12, item 6): closed segments re-verified in the
background, the result sealed and shown in /health, /metrics and ``status``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auditd_py import config
from auditd_py.daemon.reload import fixed_changes
from auditd_py.errors import ConfigError
from auditd_py.store.immutable import release
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, free_port, get_health, show, wait_for

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("auditd_py_self_verify_")
    }


def meta(arc: Arc, event: str) -> list[dict[str, Any]]:
    return [r for r in show(arc, "--meta") if r["event"] == event]


def self_check(port: int) -> dict[str, Any]:
    _, doc = get_health(port)
    sc = doc.get("self_check")
    assert isinstance(sc, dict), doc
    return sc


def test_a_flipped_byte_in_a_closed_segment_is_reported_within_an_interval(
    tmp_path: Path,
) -> None:
    arc = Arc(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"".join(b"line %03d\n" % i for i in range(50)))
    port = free_port()
    doc = configs.daemon(
        arc,
        metrics={"listen": f"127.0.0.1:{port}"},
        sources=[configs.file_source(logs)],
        segments={"compress": "none"},
        self_check={"interval": "1s"},
    )
    d = Daemon(tmp_path, configs.write(tmp_path / "d.yaml", doc))
    try:
        d.ready()
        assert wait_for(lambda: sum(r["source"] == "app" for r in show(arc)) == 50)
        d.proc.send_signal(signal.SIGUSR1)  # rotate: the first segment is closed
        assert wait_for(lambda: len(arc.layout.segment_files()) == 2)
        closed = arc.layout.segment_files()[0][1]
        # the closed segment's records, all verified (the header and 50 lines at least)
        assert wait_for(lambda: (self_check(port).get("seq_end") or 0) >= 51), self_check(port)
        ok = self_check(port)
        assert ok["state"] == "passed" and ok["segments"] == 1 and ok["seq_first"] == 0
        assert wait_for(lambda: meta(arc, "verify.passed"))
        passed = meta(arc, "verify.passed")[0]["attrs"]
        assert passed["seq_first"] == 0 and passed["seq_end"] == ok["seq_end"]
        assert scrape(port)["auditd_py_self_verify_ok"] == 1
        code, _ = get_health(port)
        assert code == 200

        # flip one byte of a record in the closed (immutable) segment
        seq = next(r["seq"] for r in show(arc) if r["message"] == "line 007")
        release(closed)
        data = bytearray(closed.read_bytes())
        i = data.index(b"line 007")
        data[i] ^= 0x20  # "line" -> "Line"
        closed.write_bytes(bytes(data))
        flipped = time.time()
        interval = 1.0

        assert wait_for(lambda: get_health(port)[0] == 503, timeout=30)
        code, health = get_health(port)
        sc = health["self_check"]
        assert sc["state"] == "failed" and sc["code"] == "broken_link", sc
        assert sc["file"] == f"segments/{closed.name}" and sc["seq"] == seq, sc
        # reported by the first check that began after the flip (within one interval of it)
        assert sc["last_check_timestamp"] >= flipped
        assert sc["failed_checks"] >= 1
        assert any(r.startswith("self-check failed: broken_link at ") for r in health["reasons"])

        m = scrape(port)
        assert m["auditd_py_self_verify_ok"] == 0
        assert m["auditd_py_self_verify_failures_total"] >= 1
        assert m["auditd_py_self_verify_checks_total"] >= 2

        st = subprocess.run(
            [*CLI, "status", "--url", f"http://127.0.0.1:{port}"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert st.returncode == 1, st
        assert b"SELF-CHECK FAILED: broken_link at segments/" in st.stdout, st.stdout
        # and systemd's STATUS= line, the fourth view of the same snapshot
        assert d.notify.wait_for(f"SELF-CHECK FAILED: broken_link in segments/{closed.name}", 10)

        assert wait_for(lambda: meta(arc, "verify.failed"))
        (failed,) = meta(arc, "verify.failed")  # sealed once, not at every interval
        attrs = failed["attrs"]
        assert attrs["code"] == "broken_link" and attrs["seq"] == seq
        assert attrs["seq_first"] == 0 and attrs["seq_end"] == seq  # verified before it
        assert failed["time"] / 1e9 - flipped < 30 * interval
    finally:
        d.stop()


def test_self_check_settings() -> None:
    base = "archive: {path: /tmp/a}\n"
    c = config.load_text(base).self_check
    assert c.enabled and c.interval == 300 * 10**9 and c.cpu_share == 0.25
    c = config.load_text(base + "self_check: {interval: 10s, cpu_share: 0.5}\n").self_check
    assert c.interval == 10 * 10**9 and c.cpu_share == 0.5
    for bad in ("{cpu_share: 0}", "{cpu_share: 2}", "{interval: 0s}", "{intervl: 1s}"):
        with pytest.raises(ConfigError):
            config.load_text(base + f"self_check: {bad}\n")


def test_the_worker_runs_at_low_priority_with_bounded_memory(tmp_path: Path) -> None:
    """nice 19 and an address-space cap, then only the segments before the open one."""
    arc = Arc(tmp_path)
    arc.seal([b"a", b"b"])
    arc.seal([b"c"])
    first, second = arc.layout.segment_names()
    probe = (
        "import os, resource, sys\n"
        "from auditd_py.daemon.selfcheck_worker import main\n"
        "main(sys.argv[1:])\n"
        "print(os.nice(0), resource.getrlimit(resource.RLIMIT_AS)[0])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(arc.layout.root), "--before", second,
         "--max-memory", str(900 << 20)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    doc_line, nice_line = r.stdout.decode().splitlines()
    assert nice_line == f"19 {900 << 20}"
    doc = orjson.loads(doc_line)
    assert doc["ok"] is True and doc["verified"]["segments"] == [first]

    # a closed segment changed: a failure, with its code and place
    path = arc.layout.segments / first
    path.write_bytes(path.read_bytes().replace(b'"a"', b'"A"'))
    r = subprocess.run(
        [sys.executable, "-m", "auditd_py.daemon.selfcheck_worker", str(arc.layout.root),
         "--before", second],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    doc = orjson.loads(r.stdout)
    assert doc["ok"] is False and doc["failures"][0]["code"] == "broken_link"
    assert doc["failures"][0]["file"] == f"segments/{first}"


def test_a_reload_cannot_change_the_self_check() -> None:
    base = "archive: {path: /tmp/a}\n"
    old = config.load_text(base)
    new = config.load_text(base + "self_check: {interval: 1m}\n")
    assert fixed_changes(old, old) == []
    assert fixed_changes(old, new) == [
        "self_check settings cannot change on reload; restart the daemon"
    ]


def shown(arc: Arc, message: str) -> bool:
    return any(r["message"] == message for r in show(arc))


def rotated_from(arc: Arc, open_one: str) -> bool:
    return arc.layout.segment_names()[-1] != open_one


def test_retention_while_checking_is_not_a_failure(tmp_path: Path) -> None:
    """deletions.jsonl gains its line when the deletion is sealed into the open segment,
    which the self-check does not read: that newest entry is not an added one (F4)."""
    arc = Arc(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    doc = configs.daemon(
        arc,
        epoch_interval="1s",
        metrics={"listen": f"127.0.0.1:{port}"},
        sources=[configs.file_source(logs)],
        segments={"compress": "none"},
        retention={"max_segments": 2, "check_interval": "200ms"},
        self_check={"interval": "1s"},
    )
    d = Daemon(tmp_path, configs.write(tmp_path / "d.yaml", doc))
    try:
        d.ready()
        with (logs / "app.log").open("ab") as fh:
            for k in range(5):
                fh.write(b"".join(b"round %d line %03d\n" % (k, i) for i in range(20)))
                fh.flush()
                # retention may have taken the earlier rounds already
                assert wait_for(partial(shown, arc, f"round {k} line 019"))
                open_one = arc.layout.segment_names()[-1]
                d.proc.send_signal(signal.SIGUSR1)
                assert wait_for(partial(rotated_from, arc, open_one)), k
        assert wait_for(lambda: len(meta(arc, "retention.deleted")) >= 2, timeout=30)
        checks = self_check(port).get("checks") or 0
        assert wait_for(lambda: (self_check(port).get("checks") or 0) >= checks + 2, timeout=30)
        sc = self_check(port)
        failed = [r["attrs"] for r in meta(arc, "verify.failed")]
        assert sc["state"] == "passed" and not sc.get("failed_checks") and not failed, (sc, failed)
    finally:
        d.stop()
