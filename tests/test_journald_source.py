"""The journald source against real journal files.

The files are written by ``systemd-journal-remote`` from the Journal Export
Format we generate here (binary fields in the length-prefixed encoding), and
read back through ``systemd.journal.Reader`` by the source. The sink and the
meta-log are collecting fakes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditd_py import config
from auditd_py import events as ev_names
from auditd_py.chain.encoding import encode_body
from auditd_py.clock import ManualClock
from auditd_py.contracts import Position
from auditd_py.daemon.queue import BatchQueue
from auditd_py.record import Fields
from auditd_py.sources.journald import JournalSource, entry_fields, field_value
from tests.support.journal import (
    BOOT,
    T0,
    Remote,
    entry,
    integration,
    wait_entries,
    write_journal,
)
from tests.support.wait import wait_until

# ---------------------------------------------------------------- fakes


class Timeline:
    """What the sink and the meta-log saw, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.cv = threading.Condition()


class CollectSink:
    def __init__(self, timeline: Timeline | None = None) -> None:
        self.timeline = timeline or Timeline()
        self.records: list[Fields] = []
        self.batches = 0

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        with self.timeline.cv:
            self.records.extend(batch)
            self.batches += 1
            self.timeline.items.extend(("record", f) for f in batch)
            self.timeline.cv.notify_all()
        return True

    def room(self) -> int:
        return 1 << 30

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Fields]:
        with self.timeline.cv:
            self.timeline.cv.wait_for(lambda: len(self.records) >= n, timeout)
            return list(self.records)


class CollectMeta:
    def __init__(self, timeline: Timeline | None = None) -> None:
        self.timeline = timeline or Timeline()
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, name: str, message: str, **fields: Any) -> None:
        assert name in ev_names.CATALOGUE, name
        json.dumps(fields)  # plain data only
        with self.timeline.cv:
            self.events.append((name, message, fields))
            self.timeline.items.append(("event", name))
            self.timeline.cv.notify_all()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, _, f in self.events if n == name]


def settings(
    directory: Path, matches: Sequence[str] = (), read_from: str = "beginning"
) -> config.JournaldSource:
    return config.JournaldSource.model_validate(
        {
            "name": "jr",
            "type": "journald",
            "directory": str(directory),
            "matches": list(matches),
            "read_from": read_from,
        }
    )


class Running:
    def __init__(self, source: JournalSource, sink: CollectSink, meta: CollectMeta) -> None:
        self.source, self.sink, self.meta = source, sink, meta

    def messages(self) -> list[bytes]:
        return [r.message for r in self.sink.records]


@pytest.fixture
def run() -> Iterator[Any]:
    started: list[JournalSource] = []

    def start(
        s: config.JournaldSource,
        positions: Mapping[str, Position] | None = None,
        **kw: Any,
    ) -> Running:
        tl = Timeline()
        sink, meta = CollectSink(tl), CollectMeta(tl)
        src = JournalSource(s, ManualClock(), **kw)
        src.start(sink, meta, positions or {})
        started.append(src)
        return Running(src, sink, meta)

    yield start
    for src in started:
        src.stop()


def raw(value: Any) -> bytes:
    """A stored field value back to its bytes."""
    if isinstance(value, str):
        return value.encode("utf-8")
    assert isinstance(value, dict) and set(value) == {"b64"}, value
    return base64.b64decode(value["b64"], validate=True)


def cursor_of(rec: Fields) -> str:
    assert rec.attrs is not None
    c = rec.attrs["pos"]["cursor"]
    assert isinstance(c, str)
    return c


def position(rec: Fields) -> dict[str, Position]:
    assert rec.attrs is not None
    return {"jr:cursor": Position(rec.attrs["pos"], rec.message[-32:])}


# ---------------------------------------------------------------- conversion (pure)


def test_entry_fields_is_lossless_and_json_safe() -> None:
    data: dict[str, bytes | list[bytes]] = {
        "MESSAGE": b"bin\x00\xff\xfe\nmsg",
        "TEXT": "ünïcödé ✓".encode(),
        "BIN": b"\xc3\x28\x00",
        "EMPTY": b"",
        "MULTI": [b"one", b"\xff"],
        "_BOOT_ID": BOOT,
        "_SOURCE_REALTIME_TIMESTAMP": b"1764000000000123",
    }
    f = entry_fields("jr", data, 1_764_000_000_123_456, 42, "s=1;i=2")
    assert f.time_ns == 1_764_000_000_123_456_000
    assert f.source == "jr"
    assert f.message == b"bin\x00\xff\xfe\nmsg"
    assert f.event is None
    assert f.attrs is not None
    assert f.attrs["pos"] == {"k": "jr:cursor", "cursor": "s=1;i=2"}
    j = f.attrs["journal"]
    assert j["TEXT"] == "ünïcödé ✓"
    assert j["BIN"] == {"b64": base64.b64encode(b"\xc3\x28\x00").decode()}
    assert j["EMPTY"] == ""
    assert j["MULTI"] == ["one", {"b64": "/w=="}]
    assert j["_SOURCE_REALTIME_TIMESTAMP"] == "1764000000000123"
    assert j["__REALTIME_TIMESTAMP"] == 1_764_000_000_123_456
    assert j["__MONOTONIC_TIMESTAMP"] == 42
    assert "__CURSOR" not in j and "MESSAGE" not in j  # in pos.cursor and message
    for key, value in data.items():
        if key == "MESSAGE":
            continue
        got = j[key]
        if isinstance(value, list):
            assert [raw(v) for v in got] == value
        else:
            assert raw(got) == value
    # Sealable: plain JSON types only (no floats, datetimes, UUIDs).
    encode_body(0, 0, f)
    json.dumps(f.attrs, allow_nan=False)


def test_entry_fields_message_variants() -> None:
    assert entry_fields("jr", {"A": b"x"}, 1, 2, "c").message == b""
    assert entry_fields("jr", {"MESSAGE": [b"first", b"second"]}, 1, 2, "c").message == b"first"
    assert entry_fields("jr", {"MESSAGE": []}, 1, 2, "c").message == b""


@given(st.binary(max_size=64))
def test_field_value_round_trips(value: bytes) -> None:
    assert raw(field_value(value)) == value


# ---------------------------------------------------------------- real journal files


F = TypeVar("F", bound=Callable[..., None])


def integration_test(fn: F) -> F:
    """Marked ``integration``; skipped (with the reason) where the tools are missing."""
    for mark in integration:
        fn = mark(fn)
    return fn


BIG = b"large compressible field \x00\xff " * 12_000  # ~330 KiB, above the 64 KiB threshold


@integration_test
def test_reads_every_field_losslessly(tmp_path: Path, run: Any) -> None:
    entries = [
        entry(0, b"plain text"),
        entry(1, b"binary\x00\xff\xfe message\nsecond line", [("BINFIELD", b"\xc3\x28 \xff")]),
        entry(2, None, [("NOTE", b"no MESSAGE field")]),
        entry(3, "ünïcödé ✓".encode(), [("MULTI", b"one"), ("MULTI", b"two")]),
        entry(4, BIG, [("PRIORITY", b"6"), ("MESSAGE_ID", b"fc2e22bc6ee647b6b90729ab34a250b1")]),
        entry(5, b"", [("_SOURCE_REALTIME_TIMESTAMP", str(T0 + 4999).encode())]),
    ]
    write_journal(tmp_path / "j", entries)
    r = run(settings(tmp_path / "j"))
    t = time.monotonic()
    r.source.drain()
    assert time.monotonic() - t < 2
    recs = r.sink.records
    assert len(recs) == len(entries)
    assert r.meta.events == []
    for rec, sent in zip(recs, entries, strict=True):
        assert rec.source == "jr"
        sent_fields = dict(sent)  # MULTI appears twice: checked below
        assert rec.message == sent_fields.get("MESSAGE", b"")
        assert rec.time_ns == int(sent_fields["__REALTIME_TIMESTAMP"]) * 1000
        assert rec.attrs is not None
        j = rec.attrs["journal"]
        assert j["__REALTIME_TIMESTAMP"] == int(sent_fields["__REALTIME_TIMESTAMP"])
        assert j["__MONOTONIC_TIMESTAMP"] == int(sent_fields["__MONOTONIC_TIMESTAMP"])
        assert rec.attrs["pos"]["k"] == "jr:cursor"
        stored = {k: v for k, v in j.items() if not k.startswith("__")}
        expect: dict[str, list[bytes]] = {}
        for k, v in sent:
            if not k.startswith("__"):
                expect.setdefault(k, []).append(v)
        if len(expect.get("MESSAGE", [])) == 1:
            del expect["MESSAGE"]  # a single MESSAGE is the record's message
        assert set(stored) == set(expect)
        for k, vs in expect.items():
            got = stored[k]
            assert ([raw(x) for x in got] if isinstance(got, list) else [raw(got)]) == vs, k
        encode_body(0, 0, rec)  # sealable as it is
    assert recs[1].attrs is not None
    assert recs[1].attrs["journal"]["BINFIELD"] == {
        "b64": base64.b64encode(b"\xc3\x28 \xff").decode()
    }
    assert recs[4].message == BIG
    assert len({cursor_of(x) for x in recs}) == len(recs)


@integration_test
def test_live_entries_and_new_files_are_delivered_promptly_exactly_once(
    tmp_path: Path, run: Any
) -> None:
    d = tmp_path / "live"
    d.mkdir()
    r = run(settings(d))  # the directory is empty: the journal file appears later
    r.source.drain()
    assert r.sink.records == []
    assert r.source.healthy()[0]
    remote = Remote(d)
    n, latencies = 0, []
    try:
        for chunk in (3, 1, 5):
            sent = time.monotonic()
            remote.feed([entry(n + k, b"live %d" % (n + k)) for k in range(chunk)])
            n += chunk
            assert len(r.sink.wait_for(n)) == n
            latencies.append(time.monotonic() - sent)
        # A second file appears in the directory while we read.
        other = Remote(d, "other.journal")
        other.feed([entry(n + k, b"other %d" % k) for k in range(2)])
        n += 2
        assert len(r.sink.wait_for(n)) == n
        other.close()
    finally:
        remote.close()
    for _ in range(3):  # three more reads of everything there is: a duplicate would show
        r.source.drain()
    want = [b"live %d" % i for i in range(9)] + [b"other 0", b"other 1"]
    assert r.messages() == want
    assert r.meta.events == []
    assert max(latencies) < 1.0, latencies


@integration_test
def test_match_filters_are_pushed_down(tmp_path: Path, run: Any) -> None:
    entries = [
        entry(
            i, b"m%d" % i, [("APP_UNIT", b"app%d.service" % (i % 3)), ("KIND", b"xy"[i % 2 :][:1])]
        )
        for i in range(12)
    ]
    write_journal(tmp_path / "j", entries)
    one = run(settings(tmp_path / "j", ["APP_UNIT=app1.service"]))
    one.source.drain()
    assert one.messages() == [b"m%d" % i for i in range(12) if i % 3 == 1]
    # (APP_UNIT=app0 AND KIND=x) OR (APP_UNIT=app2)
    two = run(
        settings(tmp_path / "j", ["APP_UNIT=app0.service", "KIND=x", "+", "APP_UNIT=app2.service"])
    )
    two.source.drain()
    assert two.messages() == [
        b"m%d" % i for i in range(12) if (i % 3 == 0 and i % 2 == 0) or i % 3 == 2
    ]


@integration_test
def test_resume_from_saved_cursor_delivers_exactly_what_follows(tmp_path: Path, run: Any) -> None:
    write_journal(tmp_path / "j", [entry(i, b"e%d" % i) for i in range(10)])
    first = run(settings(tmp_path / "j"))
    first.source.drain()
    recs = first.sink.records
    assert len(recs) == 10
    again = run(settings(tmp_path / "j"), position(recs[3]))
    again.source.drain()
    assert again.messages() == [b"e%d" % i for i in range(4, 10)]
    assert [cursor_of(x) for x in again.sink.records] == [cursor_of(x) for x in recs[4:]]
    assert again.meta.events == []
    last = run(settings(tmp_path / "j"), position(recs[-1]))
    last.source.drain()
    assert last.sink.records == []
    assert last.meta.events == []
    # Resuming with matches: the saved entry is a matching one.
    write_journal(
        tmp_path / "j",
        [entry(10 + i, b"f%d" % i, [("K", b"%d" % (i % 2))]) for i in range(6)],
        "b.journal",
    )
    m1 = run(settings(tmp_path / "j", ["K=1"]))
    m1.source.drain()
    assert m1.messages() == [b"f1", b"f3", b"f5"]
    m2 = run(settings(tmp_path / "j", ["K=1"]), position(m1.sink.records[0]))
    m2.source.drain()
    assert m2.messages() == [b"f3", b"f5"]


@integration_test
@pytest.mark.parametrize("how", ["file-deleted", "seqnum-gone", "garbage"])
def test_lost_cursor_is_reported_and_reading_restarts_at_the_oldest_entry(
    tmp_path: Path, run: Any, how: str
) -> None:
    d = tmp_path / "j"
    old = write_journal(d, [entry(i, b"old %d" % i) for i in range(5)], "old.journal")
    first = run(settings(d))
    first.source.drain()
    if how == "file-deleted":
        # Vacuumed: the archive holding the cursor is gone, a new file was written.
        lost = cursor_of(first.sink.records[2])
        old.unlink()
        write_journal(d, [entry(10 + i, b"new %d" % i) for i in range(4)], "new.journal")
        expect = [b"new %d" % i for i in range(4)]
    elif how == "seqnum-gone":
        # A valid-looking cursor of this file's sequence, for a seqnum before its head.
        head = cursor_of(first.sink.records[0])
        assert ";i=1;" in head
        lost = head.replace(";i=1;", ";i=0;")
        expect = [b"old %d" % i for i in range(5)]
    else:
        lost = "not a cursor"
        expect = [b"old %d" % i for i in range(5)]
    pos = {"jr:cursor": Position({"k": "jr:cursor", "cursor": lost}, b"")}
    r = run(settings(d), pos)
    r.source.drain()
    assert r.messages() == expect
    events = r.meta.named(ev_names.JOURNAL_CURSOR_LOST)
    assert len(events) == 1
    ev = events[0]
    assert ev["cursor"] == lost
    assert ev["continue_cursor"] == cursor_of(r.sink.records[0])
    assert ev["continue_time_us"] == T0 + (10_000 if how == "file-deleted" else 0)
    assert r.meta.timeline.items[0] == ("event", ev_names.JOURNAL_CURSOR_LOST)  # the gap first
    assert r.source.cursors_lost == 1
    r.source.drain()
    assert len(r.sink.records) == len(expect)  # and nothing twice


@integration_test
def test_lost_cursor_on_an_empty_journal(tmp_path: Path, run: Any) -> None:
    d = tmp_path / "j"
    d.mkdir()
    lost = (
        "s=34db3dd5fa5648828331773c0670abee;i=7;b=0123456789abcdef0123456789abcdef;"
        "m=3e8;t=60a24181e4000;x=5c32629f6e8e76e1"
    )
    r = run(settings(d), {"jr:cursor": Position({"k": "jr:cursor", "cursor": lost}, b"")})
    events = r.meta.named(ev_names.JOURNAL_CURSOR_LOST)
    assert [(e["cursor"], e["continue_cursor"]) for e in events] == [(lost, None)]
    write_journal(d, [entry(i, b"e%d" % i) for i in range(3)])
    assert [x.message for x in r.sink.wait_for(3)] == [b"e0", b"e1", b"e2"]


@integration_test
def test_read_from_end_delivers_only_new_entries(tmp_path: Path, run: Any) -> None:
    d = tmp_path / "j"
    remote = Remote(d)
    try:
        remote.feed([entry(i, b"old %d" % i) for i in range(5)])
        wait_entries(d, 5)
        r = run(settings(d, read_from="end"))
        r.source.drain()
        assert r.sink.records == []
        remote.feed([entry(5 + i, b"new %d" % i) for i in range(2)])
        assert [x.message for x in r.sink.wait_for(2)] == [b"new 0", b"new 1"]
    finally:
        remote.close()
    # An empty journal with read_from: end: the first entry to arrive is new, and kept.
    e = tmp_path / "e"
    e.mkdir()
    r2 = run(settings(e, read_from="end"))
    write_journal(e, [entry(i, b"first %d" % i) for i in range(2)])
    assert [x.message for x in r2.sink.wait_for(2)] == [b"first 0", b"first 1"]


@integration_test
def test_drain_returns_after_everything_present(tmp_path: Path, run: Any) -> None:
    n = 3000
    write_journal(tmp_path / "j", [entry(i, b"bulk %d" % i) for i in range(n)])
    r = run(settings(tmp_path / "j"), batch_records=256)
    r.source.drain()
    assert len(r.sink.records) == n  # all there the moment drain() returns
    assert r.messages() == [b"bulk %d" % i for i in range(n)]
    assert r.sink.batches >= n // 256
    r.source.drain()  # nothing new: returns at once
    assert len(r.sink.records) == n


@integration_test
def test_back_pressure_blocks_and_loses_nothing(tmp_path: Path) -> None:
    n = 2000
    write_journal(tmp_path / "j", [entry(i, b"bp %d" % i) for i in range(n)])
    queue = BatchQueue(capacity=100)
    src = JournalSource(settings(tmp_path / "j"), ManualClock(), batch_records=50)
    src.start(queue, CollectMeta(), {})
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.002)  # a slow sealer
            for batch in queue.get(timeout=0.1):
                got.extend(f.message for f in batch if isinstance(f, Fields))
        assert queue.high_water <= 100
    finally:
        src.stop()
    assert got == [b"bp %d" % i for i in range(n)]


class FullSink(CollectSink):
    def __init__(self) -> None:
        super().__init__()
        self.blocked = threading.Event()
        """Set once a batch was offered (and refused after the put's timeout)."""

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        self.blocked.set()
        time.sleep(timeout if timeout is not None else 3600)
        return False


@integration_test
def test_stop_is_prompt_even_when_the_sink_is_full(tmp_path: Path) -> None:
    write_journal(tmp_path / "j", [entry(i, b"s%d" % i) for i in range(10)])
    src = JournalSource(settings(tmp_path / "j"), ManualClock())
    sink = FullSink()
    src.start(sink, CollectMeta(), {})
    assert sink.blocked.wait(10)  # the source is stuck on the full sink
    t = time.monotonic()
    src.stop()
    assert time.monotonic() - t < 2.0
    assert src.healthy() == (False, "stopped")


@integration_test
def test_missing_directory_is_an_error_that_is_retried(tmp_path: Path, run: Any) -> None:
    d = tmp_path / "later"
    r = run(settings(d), retry_initial=0.05, retry_max=0.1)
    t = time.monotonic()
    r.source.drain()  # returns: nothing can be read
    assert time.monotonic() - t < 1
    ok, why = r.source.healthy()
    assert not ok and "FileNotFoundError" in why
    assert wait_until(lambda: r.source.errors >= 4, 10)  # several retries …
    errors = r.meta.named(ev_names.SOURCE_ERROR)
    assert len(errors) == 1  # … reported once
    assert errors[0]["errno"] == 2 and errors[0]["directory"] == str(d)
    assert r.source.errors > 1
    write_journal(d, [entry(i, b"e%d" % i) for i in range(3)])
    assert [x.message for x in r.sink.wait_for(3)] == [b"e0", b"e1", b"e2"]
    assert r.source.healthy()[0]


_CHILD = r"""
import json, sys, time
from pathlib import Path
from auditd_py import config
from auditd_py.clock import ManualClock
from auditd_py.sources.journald import JournalSource

class Sink:
    def __init__(self): self.records = []
    def put(self, batch, *, block=True, timeout=None):
        self.records.extend(batch); return True
    def room(self): return 1 << 30

class Meta:
    def __init__(self): self.events = []
    def event(self, name, message, **fields): self.events.append([name, fields])

s = config.JournaldSource(name="jr", type="journald", directory=Path(sys.argv[1]))
sink, meta = Sink(), Meta()
src = JournalSource(s, ManualClock(), retry_initial=0.05, retry_max=0.1)
src.start(sink, meta, {})
src.drain()
print(json.dumps({"events": meta.events, "records": len(sink.records),
                  "healthy": src.healthy()}), flush=True)
sys.stdin.readline()
deadline = time.monotonic() + 5
while len(sink.records) < 3 and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"records": len(sink.records), "healthy": src.healthy()}), flush=True)
src.stop()
"""


@integration_test
def test_unreadable_journal_file_is_an_error_not_an_empty_journal(tmp_path: Path) -> None:
    # sd_journal skips files it cannot open without an error; the source must not.
    base = Path(tempfile.mkdtemp(prefix="auditd-jr-"))
    try:
        base.chmod(0o755)
        path = write_journal(base, [entry(i, b"e%d" % i) for i in range(3)])
        path.chmod(0o000)
        cmd = [sys.executable, "-c", _CHILD, str(base)]
        if os.geteuid() == 0:  # root reads anything: run the source as nobody
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        repo = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        child = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=repo
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            first = json.loads(child.stdout.readline())
            assert first["records"] == 0
            assert not first["healthy"][0] and "not readable" in first["healthy"][1]
            assert [e[0] for e in first["events"]] == [ev_names.SOURCE_ERROR]
            assert str(path) in first["events"][0][1]["error"]
            path.chmod(0o644)  # fixed: the retry finds the entries
            child.stdin.write("go\n")
            child.stdin.flush()
            second = json.loads(child.stdout.readline())
            assert second["records"] == 3
            assert second["healthy"][0]
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)
