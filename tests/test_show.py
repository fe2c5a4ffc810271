"""``auditd-py show``, flag by flag, against real archives (written by the real writer).

Syslog and journald records are built the way their sources build them
(``attrs.syslog``, ``attrs.journal``); the command runs in-process for most
flags, and as a real process on a pseudo-terminal where the terminal matters
(escaping, the pager), and with a running daemon for ``-f``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditd_py.chain.encoding import Fields
from auditd_py.chain.format import NS
from auditd_py.errors import UsageError
from auditd_py.show.options import prepare_argv
from auditd_py.show.timespec import parse_time
from auditd_py.store.writer import EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.cli import Result, run_cli
from tests.support.daemon import CLI, Daemon, wait_for
from tests.support.terminal import on_terminal
from tests.support.wait import wait_until

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
EVIL = b"evil \x1b[31mred\x1b]0;pwned\x07 \x9b2J \xe2\x80\xae end"
"""CSI colour, an OSC retitle ended by BEL, a C1 CSI (invalid UTF-8 alone), RLO."""


def _syslog(host: str, app: str, pid: str, sev: int) -> dict[str, Any]:
    return {"transport": "udp", "syslog": {"format": "rfc5424", "pri": 8 + sev,
            "facility": 1, "severity": sev, "hostname": host, "app": app,
            "procid": pid}}  # fmt: skip


def _journal(host: str, ident: str, pid: str, unit: str, prio: int) -> dict[str, Any]:
    return {"journal": {"_HOSTNAME": host, "SYSLOG_IDENTIFIER": ident, "_PID": pid,
            "_SYSTEMD_UNIT": unit, "PRIORITY": str(prio), "_UID": "0"}}  # fmt: skip


ROWS: list[tuple[str, bytes, dict[str, Any] | None]] = [
    ("app", b"file line one", None),
    ("syslog", b"sshd accepted key", _syslog("web1", "sshd", "101", 6)),
    ("syslog", b"disk FAILED badly", _syslog("web2", "kernel", "1", 2)),
    ("journal", b"cron started job", _journal("db1", "CRON", "77", "cron.service", 5)),
    ("journal", b"unit failed: Error", _journal("db1", "systemd", "1", "foo.service", 3)),
    ("app", EVIL, None),
    ("app", b"file line three", None),
]


@pytest.fixture
def arc(tmp_path: Path) -> Arc:
    """An archive of ROWS, one record a minute from T0, over three segments."""
    a = Arc(tmp_path)
    a.clock.t = int(T0.timestamp()) * NS
    w = a.writer(EpochPolicy(max_records=3))
    for i, (src, msg, attrs) in enumerate(ROWS):
        a.clock.advance(60)
        w.append(Fields(a.clock.now_ns(), src, msg, None, attrs))
        if i in (2, 4):
            w.rotate_segment("test")
    w.close()
    return a


def show(arc: Arc, *args: str) -> Result:
    return run_cli(*prepare_argv(["show", str(arc.layout.root), *args]))


def text(arc: Arc, *args: str) -> list[str]:
    r = show(arc, "--no-pager", *args)
    assert r.code == 0, str(r)
    return r.out.decode("utf-8", "backslashreplace").splitlines()


def messages(arc: Arc, *args: str) -> list[str]:
    r = show(arc, "-o", "json", *args)
    assert r.code == 0, str(r)
    return [orjson.loads(x)["message"] for x in r.out.splitlines()]


MSGS = [m.decode("utf-8", "replace") for _, m, _ in ROWS]


# ---------------------------------------------------------------- selection


def test_default_is_every_data_record_oldest_first(arc: Arc) -> None:
    assert messages(arc) == MSGS
    assert "segment.opened" in {
        orjson.loads(x).get("event") for x in show(arc, "--meta", "--json").out.splitlines()
    }
    assert len(messages(arc, "--all")) > len(MSGS)


def test_lines_reverse_and_both(arc: Arc) -> None:
    assert messages(arc, "-n", "2") == MSGS[-2:]
    assert messages(arc, "--lines", "0") == []
    assert messages(arc, "-n", "all") == MSGS
    assert messages(arc, "-r") == MSGS[::-1]
    assert messages(arc, "-r", "-n", "3") == MSGS[::-1][:3]
    assert messages(arc, "-n", "100") == MSGS
    assert show(arc, "-n", "x").code == 2


def test_since_and_until_in_systemd_time_forms(arc: Arc) -> None:
    t = T0.timestamp()
    assert messages(arc, "--since", f"@{t + 4 * 60:.0f}") == MSGS[3:]
    assert messages(arc, "-S", f"@{t + 4 * 60:.0f}", "-U", f"@{t + 5 * 60:.0f}") == MSGS[3:5]
    assert messages(arc, "--since", "2026-12-04 10:06", "--utc") == MSGS[5:]
    assert messages(arc, "--since", "2026-12-04T10:06:00Z") == MSGS[5:]
    assert messages(arc, "--until", "2026-12-04 10:02:30 UTC") == MSGS[:2]
    assert messages(arc, "--since", "2026-12-05", "--utc") == []
    # relative to now: a span that reaches back to between the 4th and 5th record
    back = int(time.time() - (t + 4 * 60 + 30))
    assert messages(arc, "--since", f"-{back}s") == MSGS[4:]
    assert messages(arc, "-S", f"-{back // 60}min {back % 60}s") == MSGS[4:]
    assert messages(arc, "--since", f"{back} seconds ago") == MSGS[4:]
    assert messages(arc, "--until", f"{back}s ago") == MSGS[:4]
    # today and yesterday: local midnights, counted here independently
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    times = [t + 60 * (i + 1) for i in range(len(MSGS))]
    assert messages(arc, "--since", "today") == [
        m for m, at in zip(MSGS, times, strict=True) if at >= midnight.timestamp()
    ]
    first = times[0]
    assert messages(arc, "--since", "yesterday", "--until", "tomorrow") == (
        MSGS if midnight.timestamp() - 86400 <= first else []
    )
    r = show(arc, "--since", "last tuesday")
    assert r.code == 2 and "yesterday" in r.err and "1 hour ago" in r.err and "@" in r.err


@pytest.mark.integration
def test_local_time_unless_utc(arc: Arc) -> None:
    """Times without a zone are local, shown and parsed (TZ: a POSIX zone one hour east)."""
    env = {**os.environ, "TZ": "XYZ-1"}
    root = str(arc.layout.root)

    def run(*args: str) -> list[str]:
        r = subprocess.run(
            [*CLI, "show", root, "--no-pager", *args], capture_output=True, env=env, check=True
        )
        return r.stdout.decode("utf-8", "backslashreplace").splitlines()

    assert run("--since", "2026-12-04 11:06", "-n", "1") == [
        "Dec 04 11:07:00 test app: file line three"
    ]
    assert len(run("--since", "2026-12-04 11:06")) == 2
    assert run("--since", "2026-12-04 10:06", "--utc", "-o", "short-iso", "-n", "1") == [
        "2026-12-04T10:07:00+00:00 test app: file line three"
    ]
    assert run("-o", "short-iso", "-n", "1") == [
        "2026-12-04T11:07:00+01:00 test app: file line three"
    ]


def test_time_forms_parse() -> None:
    now = int(datetime(2026, 12, 4, 15, 30, tzinfo=UTC).timestamp()) * NS
    day = int(datetime(2026, 12, 4, tzinfo=UTC).timestamp()) * NS
    h = 3600 * NS
    cases = {
        "now": now, "today": day, "yesterday": day - 24 * h, "tomorrow": day + 24 * h,
        "-1h": now - h, "+30m": now + h // 2, "1 hour ago": now - h,
        "2h30min ago": now - 5 * h // 2,
        "@1764842400": 1764842400 * NS, "2026-12-04 10:00": day + 10 * h, "10:00": day + 10 * h,
        "2026-12-04T10:00:00+01:00": day + 9 * h, "2026-12-04": day,
    }  # fmt: skip
    for text, want in cases.items():
        assert parse_time(text, now, utc=True) == want, text
    for bad in ("", "soon", "-1 parsec", "25:00", "2026-13-01"):
        with pytest.raises(UsageError):
            parse_time(bad, now, utc=True)


def test_repeated_source_and_field_matches(arc: Arc) -> None:
    assert messages(arc, "--source", "syslog", "--source", "journal") == MSGS[1:5]
    assert messages(arc, "app=sshd") == [MSGS[1]]
    assert messages(arc, "host=db1", "pid=77") == [MSGS[3]]  # AND across fields
    assert messages(arc, "app=sshd", "app=CRON") == [MSGS[1], MSGS[3]]  # OR within one
    assert messages(arc, "unit=foo.service") == [MSGS[4]]
    assert messages(arc, "_UID=0") == MSGS[3:5]  # any stored journal field
    assert messages(arc, "transport=udp") == MSGS[1:3]  # a stored attribute
    assert messages(arc, "priority=2") == [MSGS[2]]
    assert messages(arc, "host=test") == [MSGS[0], MSGS[5], MSGS[6]]  # the archive's host
    r = show(arc, "justaword")
    assert r.code == 2 and "FIELD=VALUE" in r.err


def test_priority_one_or_a_range(arc: Arc) -> None:
    assert messages(arc, "-p", "err") == [MSGS[2], MSGS[4]]
    assert messages(arc, "-p", "3") == [MSGS[2], MSGS[4]]
    assert messages(arc, "--priority", "notice..err") == [MSGS[3], MSGS[4]]
    assert messages(arc, "-p", "crit..crit") == [MSGS[2]]
    assert len(messages(arc, "-p", "info")) == len(MSGS)  # a file line counts as info
    assert show(arc, "-p", "loud").code == 2


def test_grep_is_smart_case(arc: Arc) -> None:
    assert messages(arc, "-g", "error") == [MSGS[4]]  # lower case: any case
    assert messages(arc, "-g", "failed") == [MSGS[2], MSGS[4]]
    assert messages(arc, "-g", "FAILED") == [MSGS[2]]  # upper case: exact
    assert messages(arc, "-g", "Failed", "--case-sensitive=no") == [MSGS[2], MSGS[4]]
    assert messages(arc, "-g", "failed", "--case-sensitive") == [MSGS[4]]
    assert messages(arc, "-g", "FAILED", "--case-sensitive=no") == [MSGS[2], MSGS[4]]
    assert show(arc, "-g", "(").code == 2


def test_seq_ranges(arc: Arc) -> None:
    seqs = [orjson.loads(x)["seq"] for x in show(arc, "-o", "json").out.splitlines()]
    a, b = seqs[2], seqs[4]
    assert messages(arc, "--seq", f"{a}..{b}") == MSGS[2:5]
    assert messages(arc, "--seq", f"{b}..") == MSGS[4:]
    assert messages(arc, "--seq", str(a)) == [MSGS[2]]
    assert messages(arc, "--seq", f"{a}..{b}", "-r") == MSGS[2:5][::-1]
    assert show(arc, "--seq", "5..2").code == 2


# ---------------------------------------------------------------- output


def test_output_formats(arc: Arc) -> None:
    short = text(arc, "--utc", "-n", "1", "-p", "crit")
    assert short == ["Dec 04 10:03:00 web2 kernel[1]: disk FAILED badly"]
    assert text(arc, "--utc", "-o", "short-iso", "app=sshd") == [
        "2026-12-04T10:02:00+00:00 web1 sshd[101]: sshd accepted key"
    ]
    precise = text(arc, "--utc", "-o", "short-precise", "app=sshd")[0]
    assert precise.startswith("Dec 04 10:02:00.") and precise.endswith(
        "sshd[101]: sshd accepted key"
    )
    unix = text(arc, "-o", "short-unix", "app=sshd")[0]
    assert unix.startswith(f"{int(T0.timestamp()) + 120}.") and unix.endswith("accepted key")
    assert text(arc, "-o", "cat", "--source", "journal") == [MSGS[3], MSGS[4]]
    assert text(arc, "-o", "short", "-n", "1", "--utc") == [
        "Dec 04 10:07:00 test app: file line three"
    ]
    pretty = show(arc, "-o", "json-pretty", "app=CRON").out
    assert orjson.loads(pretty)["attrs"]["journal"]["_SYSTEMD_UNIT"] == "cron.service"
    assert b"\n  " in pretty
    verbose = text(arc, "-o", "verbose", "--utc", "app=CRON")
    assert verbose[0].startswith("Fri 2026-12-04 10:04:00.000000000 UTC [seq=")
    assert "    _SYSTEMD_UNIT=cron.service" in verbose and "    PRIORITY=5" in verbose
    raw = show(arc, "-o", "raw", "-n", "2").out
    assert raw == EVIL + b"\nfile line three\n"  # the original bytes, off a terminal


def test_export_format_is_journald_export(arc: Arc) -> None:
    out = show(arc, "-o", "export", "-n", "2").out
    first, second, tail = out.split(b"\n\n")
    assert tail == b""
    assert b"MESSAGE\n" + len(EVIL).to_bytes(8, "little") + EVIL + b"\n" in first  # binary form
    assert b"\nMESSAGE=file line three\n" in second and b"\n_HOSTNAME=test\n" in second


def test_json_is_the_stored_line_and_show_seal(arc: Arc) -> None:
    stored = (arc.layout.segments / "seg-0000000000.jsonl").read_bytes().splitlines()
    out = show(arc, "--json", "--all").out.splitlines()
    assert out[: len(stored)] == stored
    sealed = text(arc, "--show-seal", "-n", "1")
    rec = orjson.loads(show(arc, "--json", "-n", "1").out)
    assert sealed[1] == (
        f"    seq={rec['seq']} epoch={rec['epoch']} link={rec['link']} mac={rec['mac']}"
    )
    verbose = text(arc, "-o", "verbose", "--show-seal", "-n", "1")
    assert f"    __MAC={rec['mac']}" in verbose


def test_fast_paths_agree_with_a_full_scan(arc: Arc) -> None:
    """Seeking by header and checkpoint selects what a scan of everything selects."""
    everything = [orjson.loads(x) for x in show(arc, "--json", "--all").out.splitlines()]
    times = sorted({r["time"] for r in everything})
    for t in times[:: max(1, len(times) // 7)]:
        since = f"@{t // NS}.{t % NS:09d}"
        want = [r["seq"] for r in everything if r["time"] >= t]
        got = [
            orjson.loads(x)["seq"]
            for x in show(arc, "--json", "--all", "-S", since).out.splitlines()
        ]
        assert got == want, since
        back = show(arc, "--json", "--all", "-S", since, "-r").out.splitlines()
        assert [orjson.loads(x)["seq"] for x in back] == want[::-1]


def test_seeking_inside_a_big_segment(tmp_path: Path) -> None:
    """--seq and --since bisect a plain segment by byte offset: same answers as a scan."""
    a = Arc(tmp_path)
    a.seal([b"line %05d %s" % (i, b"y" * 150) for i in range(3000)], max_records=500)
    (seg,) = a.segment_paths()
    assert seg.stat().st_size > 8 * 65536
    every = [orjson.loads(x) for x in show(a, "--json", "--all").out.splitlines()]

    def seqs(*args: str) -> list[int]:
        return [orjson.loads(x)["seq"] for x in show(a, "--json", "--all", *args).out.splitlines()]

    assert seqs("--seq", "2500..2510") == list(range(2500, 2511))
    assert seqs("--seq", "100..110", "-r") == list(range(110, 99, -1))
    assert seqs("--seq", "2990..") == [r["seq"] for r in every if r["seq"] >= 2990]
    t = every[2200]["time"]
    assert seqs("--since", f"@{t // NS}.{t % NS:09d}") == [
        r["seq"] for r in every if r["time"] >= t
    ]


# ---------------------------------------------------------------- the terminal


@pytest.mark.integration
@pytest.mark.parametrize("output", [None, "short", "cat", "raw", "verbose", "json", "export"])
def test_escape_sequences_never_reach_a_terminal(arc: Arc, output: str | None) -> None:
    """None: plain ``show DIR`` (PAGER=cat: none), which printed them raw before."""
    more = ["--no-pager", "-o", output, "-n", "2"] if output is not None else []
    code, out = on_terminal("show", str(arc.layout.root), *more, env={"PAGER": "cat"})
    assert code == 0
    assert b"\x1b" not in out and b"\x07" not in out and b"\xc2\x9b" not in out, out
    assert "\u202e".encode() not in out
    assert b"\\x1b[31mred" in out or b"\\u001b[31mred" in out, out
    assert b"file line three" in out


@pytest.mark.integration
def test_pager_on_a_terminal_like_journalctl(arc: Arc) -> None:
    root = str(arc.layout.root)
    code, out = run_env(root, {"PAGER": "env", "LESS": "-R"})
    assert code == 0 and b"LESS=-R\r\n" in out, out  # the user's LESS wins
    code, out = run_env(root, {"PAGER": "env"})
    assert code == 0 and b"LESS=FRSXMK" in out, out
    code, out = run_env(root, {"PAGER": "env"}, "--no-pager")
    assert b"LESS=" not in out and b"file line three" in out
    # the real less, as journalctl runs it: one screen, printed and quit (-F)
    code, out = run_env(root, {"PAGER": "less"})
    assert code == 0 and b"file line three" in out and b"\\x1b[31mred" in out
    # not a terminal: no pager
    r = subprocess.run(
        [*CLI, "show", root], capture_output=True, env={**os.environ, "PAGER": "env"}, check=True
    )
    assert b"LESS=" not in r.stdout


def run_env(root: str, env: dict[str, str], *args: str) -> tuple[int, bytes]:
    saved = {
        k: os.environ.pop(k) for k in ("LESS", "SYSTEMD_LESS", "SYSTEMD_PAGER") if k in os.environ
    }
    try:
        return on_terminal("show", root, *args, env=env)
    finally:
        os.environ.update(saved)


# ---------------------------------------------------------------- follow


@pytest.mark.integration
def test_follow_across_rotation_and_compression(tmp_path: Path) -> None:
    """``-f`` prints every line the daemon seals, once, in order, while the daemon
    rotates segments by size and compresses the closed ones meanwhile."""
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    doc = configs.daemon(
        arc, segments={"max_bytes": "16KiB", "compress": "zstd"},
        sources=[configs.file_source(logs, poll_interval="50ms")],
    )  # fmt: skip
    d = Daemon(tmp_path, configs.write(tmp_path / "d.yaml", doc))
    out_path = tmp_path / "follow.out"
    n = 600
    follower: subprocess.Popen[bytes] | None = None
    try:
        d.ready()
        with (logs / "app.log").open("ab") as fh:
            fh.write(b"before 0\nbefore 1\n")
        assert wait_for(lambda: b"before 1" in run_cli("show", arc.layout.root, "-o", "cat").out)
        with out_path.open("wb") as out:
            follower = subprocess.Popen(
                [*CLI, "show", str(arc.layout.root), "-f", "-n", "1", "-o", "cat"],
                stdout=out, stderr=subprocess.PIPE,
            )  # fmt: skip
        assert wait_until(lambda: out_path.read_bytes() == b"before 1\n", 20)
        with (logs / "app.log").open("ab") as fh:
            for k in range(0, n, 50):
                fh.write(b"".join(b"line %05d %s\n" % (i, b"x" * 120) for i in range(k, k + 50)))
                fh.flush()
                time.sleep(0.05)
        want = [b"before 1"] + [b"line %05d %s" % (i, b"x" * 120) for i in range(n)]
        assert wait_until(lambda: out_path.read_bytes().splitlines() == want, 40), len(
            out_path.read_bytes().splitlines()
        )
        zst = list(arc.layout.segments.glob("*.zst"))
        assert len(zst) >= 3, sorted(p.name for p in arc.layout.segments.iterdir())
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    finally:
        if follower is not None:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
            assert follower.stderr is not None
            err = follower.stderr.read()
            follower.stderr.close()
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    assert b"Traceback" not in err, err


def test_show_of_no_archive_is_one_line(tmp_path: Path) -> None:
    r = run_cli("show", tmp_path)
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err
