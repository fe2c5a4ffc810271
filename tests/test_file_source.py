"""The file source: globs, partial and long lines, bytes, rotation, truncation, restarts.

Real files, the real daemon (``auditd-py run --config C --once`` in-process, a
live :class:`~auditd_py.daemon.supervisor.Daemon` in a thread, or the installed tool as a
subprocess for the tests marked ``integration``), the real ``logrotate``, and
:class:`~auditd_py.sources.file.FileTailer` driven directly with a collecting
fake Sink/Meta for the unit-level cases. Every test asserts exact outcomes:
each line sealed exactly once, in order per file, with the right flags, and
(where there is an archive) ``auditd-py verify --key`` passes.

Deterministic interleavings: where a test must make something happen *between
two polls* of a live tailer, it holds the tailer's lock (``tailer._lock``)
meanwhile; the tailer thread then simply waits, as it would if it were slow.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditd_py import events as ev
from auditd_py.config import FileSource
from auditd_py.record import Position
from auditd_py.sources import file as file_mod
from auditd_py.sources.file import FileTailer
from auditd_py.sources.file.fingerprint import same_end
from tests.support.files import (
    CLI_BIN,
    LOGROTATE,
    SOURCE,
    Collector,
    LiveDaemon,
    Polls,
    Rec,
    Sandbox,
    Writer,
    by_key,
    file_settings,
    key_of,
    logrotate,
    manual_tailer,
    run_cli,
    run_real,
    start_tailer,
    wait_until,
)

MiB = 1 << 20
StartTailer = Callable[..., tuple[FileTailer, Collector]]

needs_logrotate = pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="needs logrotate")


@pytest.fixture
def sb(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture
def tailers() -> Iterator[StartTailer]:
    """Start FileTailers directly; every one is stopped at the end of the test."""
    started: list[FileTailer] = []

    def start(
        settings: FileSource, positions: Mapping[str, Position] | None = None
    ) -> tuple[FileTailer, Collector]:
        t, c = start_tailer(settings, positions)
        started.append(t)
        return t, c

    yield start
    for t in started:
        t.stop()


@pytest.fixture(autouse=True)
def no_leaked_claims() -> Iterator[None]:
    """A stopped source must release its claim on every file (else another
    test's file that reuses the inode would be refused as a duplicate)."""
    yield
    leaked = dict(file_mod._claims)
    file_mod._claims.clear()
    assert not leaked, f"files still claimed after every source stopped: {leaked}"


def lines_of(n: int, tag: str, pad: int = 0) -> list[bytes]:
    return [f"{tag} line {i:05d} {'.' * pad}".encode() for i in range(n)]


def write(path: Path, data: bytes, mode: str = "ab") -> None:
    with open(path, mode) as fh:
        fh.write(data)


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def assert_once_each(recs: list[Rec], expected: Mapping[str, list[bytes]]) -> None:
    """Per file: exactly the expected lines, in order; nothing else, nothing twice."""
    got = by_key(recs)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    flat = [r.message for r in recs]
    assert len(flat) == len(set(flat)), "a line was sealed twice"


# ============================================================ basics


def test_glob_reads_every_matching_file_and_honours_exclude(sb: Sandbox) -> None:
    a, b, skip, other = (sb.log(n) for n in ("a.log", "b.log", "skip.log", "other.txt"))
    a_lines, b_lines = lines_of(5, "a"), lines_of(3, "b")
    write(a, joined(a_lines))
    write(b, joined(b_lines))
    write(skip, b"excluded\n")
    write(other, b"not matched\n")
    cfg = sb.config(sb.file_source("*.log", exclude=[str(skip)]))
    sb.run_once(cfg)

    recs = sb.records()
    assert_once_each(recs, {key_of(a): a_lines, key_of(b): b_lines})
    assert {r.path for r in recs} == {str(a), str(b)}
    assert not any(r.partial or r.split or r.cut for r in recs)
    # the sealed position of each record is the byte offset just after its line
    ends = [sum(len(x) + 1 for x in a_lines[: i + 1]) for i in range(len(a_lines))]
    assert [r.off for r in recs if r.path == str(a)] == ends
    opened = {o["attrs"]["path"] for o in sb.meta(ev.FILE_OPENED)}
    assert opened == {str(a), str(b)}
    sb.verify()


def test_live_tailer_picks_up_a_file_created_later(sb: Sandbox, tailers: StartTailer) -> None:
    a = Writer(sb.log("a.log"))
    a.numbered("a", 3)
    settings = file_settings(
        [sb.logs / "*.log"], exclude=[str(sb.logs / "skip-*.log")], poll_interval="50ms"
    )
    t, c = tailers(settings)
    polls = Polls(t)
    c.wait_records(3)

    b = Writer(sb.log("b.log"))  # appears after the tailer started
    b.numbered("b", 4)
    skip = Writer(sb.log("skip-1.log"))
    skip.numbered("skip", 2)
    a.numbered("a", 2, start=3)
    recs = c.wait_records(9)
    polls.wait(6)  # (what 0.3 s of 50 ms polls would be) nothing more, nothing twice
    recs = c.records()
    assert_once_each(recs, {**a.written, **b.written})
    # (a new file may first be "deferred" while it could be a copy being written)
    opened = [(f["path"], f["how"]) for f in c.named(ev.FILE_OPENED) if f["how"] != "deferred"]
    assert opened == [(str(sb.log("a.log")), "new"), (str(sb.log("b.log")), "new")]


def test_exactly_once_across_restarts(sb: Sandbox) -> None:
    cfg = sb.config(sb.file_source("*.log"))
    a = Writer(sb.log("a.log"))
    a.numbered("a", 50)
    sb.run_once(cfg)
    a.numbered("a", 30, start=50)
    b = Writer(sb.log("b.log"))
    b.numbered("b", 10)
    sb.run_once(cfg)
    a.numbered("a", 1, start=80)
    sb.run_once(cfg)
    sb.run_once(cfg)  # nothing new: nothing sealed

    assert_once_each(sb.records(), {**a.written, **b.written})
    resumed = [(o["attrs"]["path"], o["attrs"]["offset"]) for o in sb.meta(ev.FILE_RESUMED)]
    a_size_1 = len(joined(a.written[a.key][:50]))
    assert (str(a.path), a_size_1) in resumed
    assert sb.meta(ev.FILE_POSITION_INVALID) == []
    sb.verify()


@pytest.mark.integration
def test_exactly_once_across_restarts_real_cli(sb: Sandbox) -> None:
    """The same, with the installed tool as a subprocess (its own process each time)."""
    cfg = sb.config(sb.file_source("*.log"))
    a = Writer(sb.log("a.log"))
    for round_ in range(3):
        a.numbered(f"round {round_}", 20)
        r = run_real("run", "--config", cfg, "--once")
        assert r.code == 0, str(r)
    assert_once_each(sb.records(), a.written)
    sb.verify()


# ============================================================ partial lines


def test_partial_line_is_held_then_sealed_flagged_partial_after_timeout(
    sb: Sandbox, tailers: StartTailer
) -> None:
    log = sb.log("a.log")
    write(log, b"first\n")
    t, c = tailers(
        file_settings([log], partial_line_timeout="200ms", poll_interval="20ms"),
    )
    polls = Polls(t)
    c.wait_records(1)
    written_at = time.monotonic()
    write(log, b"hel")
    time.sleep(0.12)
    assert c.count() == 1, "a partial line was sealed before partial_line_timeout"

    recs = c.wait_records(2, timeout=5)
    assert time.monotonic() - written_at < 3
    assert c.arrived[1] - written_at >= 0.2
    assert recs[1].message == b"hel" and recs[1].partial and recs[1].cut
    assert recs[1].off == len(b"first\nhel")

    write(log, b"lo world\n")  # the rest of the line: its own record
    recs = c.wait_records(3)
    polls.wait(15)  # 0.3 s of 20 ms polls: past the partial-line timeout, nothing more
    recs = c.records()
    assert [r.message for r in recs] == [b"first", b"hel", b"lo world"]
    assert [r.partial for r in recs] == [False, True, False]
    assert recs[2].off == len(b"first\nhello world\n")


def test_partial_line_completed_before_timeout_is_one_record(
    sb: Sandbox, tailers: StartTailer
) -> None:
    log = sb.log("a.log")
    write(log, b"")
    t, c = tailers(file_settings([log], partial_line_timeout="5s", poll_interval="20ms"))
    polls = Polls(t)
    write(log, b"hel")
    polls.wait(10)  # the tailer has seen the partial line (0.2 s of 20 ms polls)
    write(log, b"lo\n")
    recs = c.wait_records(1)
    polls.wait(10)  # and nothing more comes of it
    recs = c.records()
    assert [(r.message, r.partial, r.split) for r in recs] == [(b"hello", False, False)]


def test_once_seals_trailing_partial_line_and_later_the_remainder_once(sb: Sandbox) -> None:
    log = sb.log("a.log")
    write(log, b"one\ntwo\nthr")
    cfg = sb.config(sb.file_source("*.log", partial_line_timeout="200ms"))
    sb.run_once(cfg)
    recs = sb.records()
    assert [(r.message, r.partial, r.cut) for r in recs] == [
        (b"one", False, False),
        (b"two", False, False),
        (b"thr", True, True),
    ]

    write(log, b"ee\nfour\n")
    sb.run_once(cfg)
    sb.run_once(cfg)
    recs = sb.records()
    assert [(r.message, r.partial) for r in recs] == [
        (b"one", False),
        (b"two", False),
        (b"thr", True),
        (b"ee", False),
        (b"four", False),
    ]
    assert recs[2].message + recs[3].message == b"three"
    assert {r.key for r in recs} == {key_of(log)}
    sb.verify()


# ============================================================ long lines


def test_long_line_is_split_into_flagged_pieces(sb: Sandbox) -> None:
    log = sb.log("a.log")
    long = bytes(range(33, 127)) * 32  # 3008 bytes
    exact = b"e" * 1024
    over = b"o" * 1025
    write(log, joined([b"before", long, exact, over, b"after"]))
    cfg = sb.config(sb.file_source("*.log", max_line_bytes="1KiB"))
    sb.run_once(cfg)
    recs = sb.records()
    got = [(len(r.message), r.split, r.cut) for r in recs]
    assert got == [
        (6, False, False),
        (1024, True, True),
        (1024, True, True),
        (960, True, False),  # the last piece: split, position after its newline
        (1024, False, False),  # exactly the limit: not split
        (1024, True, True),
        (1, True, False),
        (5, False, False),
    ]
    assert b"".join(r.message for r in recs[1:4]) == long
    assert b"".join(r.message for r in recs[5:7]) == over
    assert recs[3].off == len(joined([b"before", long]))
    assert recs[2].off == len(b"before\n") + 2048

    write(log, b"later\n")  # resuming after split pieces: nothing twice
    sb.run_once(cfg)
    assert [r.message for r in sb.records()][-2:] == [b"after", b"later"]
    assert len(sb.records()) == 9
    sb.verify()


def test_long_line_arriving_in_parts_flags_every_piece(sb: Sandbox, tailers: StartTailer) -> None:
    log = sb.log("a.log")
    write(log, b"")
    t, c = tailers(file_settings([log], max_line_bytes="1KiB", poll_interval="20ms"))
    polls = Polls(t)
    write(log, b"x" * 1500)
    c.wait_records(1)
    write(log, b"y" * 500 + b"\n")
    recs = c.wait_records(2)
    polls.wait(10)  # (0.2 s of 20 ms polls) no third piece
    recs = c.records()
    assert b"".join(r.message for r in recs) == b"x" * 1500 + b"y" * 500
    assert [len(r.message) for r in recs] == [1024, 976]
    assert [r.split for r in recs] == [True, True], "every piece of a split line is flagged"
    assert [r.cut for r in recs] == [True, False]


def test_ten_megabyte_line_with_default_limit_pieces_add_up(sb: Sandbox) -> None:
    log = sb.log("a.log")
    big = base64.b64encode(hashlib.shake_256(b"big").digest(7_500_000))
    assert len(big) == 10_000_000 and b"\n" not in big
    write(log, b"before\n" + big + b"\nafter\n")
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    recs = sb.records()
    assert recs[0].message == b"before" and recs[-1].message == b"after"
    pieces = recs[1:-1]
    assert [len(r.message) for r in pieces] == [MiB] * 9 + [10_000_000 - 9 * MiB]
    assert b"".join(r.message for r in pieces) == big  # exact, nothing dropped
    assert all(r.split and r.cut for r in pieces[:-1])
    assert not pieces[-1].cut and pieces[-1].off == len(b"before\n") + len(big) + 1
    assert not recs[0].split and not recs[-1].split
    sb.verify()


# ============================================================ bytes


def test_invalid_utf8_nul_bytes_and_crlf_survive_losslessly(sb: Sandbox) -> None:
    log = sb.log("a.log")
    lines = [
        b"caf\xe9 (latin-1)",
        b"nul\x00inside\x00",
        b"\xff\xfe\x00\x01",
        b"windows line\r",
        b"",
        b"\r",
        b"\xf0\x9f\x98\x80 valid utf-8",
        b"\xed\xa0\x80 surrogate half",
        b"cut utf-8 \xe2\x82",
        b"tab\tand \x1b[31mescape\x1b[0m",
    ]
    write(log, joined(lines))
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    write(log, b"\x80after a binary tail\r\n")
    sb.run_once(cfg)

    recs = sb.records()
    assert [r.message for r in recs] == [*lines, b"\x80after a binary tail\r"]
    raw = [o for o in sb.show() if o.get("source") == SOURCE]
    has_b64 = ["raw_b64" in o for o in raw]
    assert has_b64 == [True, False, True, False, False, False, False, True, True, False, True]
    sb.verify()


# ============================================================ rotation: rename + create


@needs_logrotate
@pytest.mark.integration
def test_logrotate_create_while_running_reads_old_file_to_its_end(sb: Sandbox) -> None:
    log = sb.log("a.log")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log", poll_interval="50ms"))
    with LiveDaemon(cfg) as d:
        app.numbered("before", 20)
        d.wait_sealed(20)
        old_key = app.key
        logrotate(sb.work, log, "create")
        assert sb.log("a.log.1").exists() and log.stat().st_size == 0
        # the app has not reopened yet: it still writes to the renamed file
        app.numbered("old fd", 5)
        d.polls.wait(6)  # the tailer has looked at both files (0.3 s of 50 ms polls)
        app.numbered("old fd late", 3)
        app.partial(b"old fd unterminated")  # sealed flagged partial when let go
        app.reopen()  # as after its SIGHUP
        assert app.key != old_key
        app.numbered("after", 10)
        d.wait_sealed(38)
        assert wait_until(lambda: d.events(ev.FILE_RELEASED) == 1, 5)
        app.numbered("after more", 5)
        d.wait_sealed(44)
    app.close()

    recs = sb.records()
    assert_once_each(recs, app.written)
    assert [r.message for r in recs if r.partial] == [b"old fd unterminated"]
    rotated = sb.meta(ev.FILE_ROTATED)
    released = sb.meta(ev.FILE_RELEASED)
    assert [o["attrs"]["path"] for o in rotated] == [str(log)]
    assert [o["attrs"]["forget"] for o in released] == [old_key]
    assert released[0]["attrs"]["offset"] == sb.log("a.log.1").stat().st_size

    sb.run_once(cfg)  # a restart: the new file resumes, the released one is not re-read
    assert len(sb.records()) == 44
    assert sb.positions() == {app.key}
    sb.verify()


# ============================================================ rotation: copytruncate


def padded(app: Writer, tag: str, n: int, start: int = 0) -> list[bytes]:
    """Lines long enough that a few of them exceed the 256-byte fingerprint."""
    return app.numbered(tag, n, start=start, pad=40)


@needs_logrotate
@pytest.mark.integration
def test_logrotate_copytruncate_with_copy_matched_by_glob(sb: Sandbox) -> None:
    log = sb.log("a.log")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log*", poll_interval="50ms"))
    with LiveDaemon(cfg) as d:
        padded(app, "before", 2000)  # ~130 KB: logrotate copies it in many 8 KiB writes
        d.wait_sealed(2000)
        logrotate(sb.work, log, "copytruncate")  # while the tailer runs freely
        copy = sb.log("a.log.1")
        assert copy.exists() and log.stat().st_size == 0
        padded(app, "after", 10)
        d.wait_sealed(2010, timeout=15)
        assert wait_until(lambda: d.events(ev.FILE_TRUNCATED) == 1, 5)
    app.close()

    assert_once_each(sb.records(), app.written)
    copies = [o["attrs"] for o in sb.meta(ev.FILE_OPENED) if o["attrs"]["path"] == str(copy)]
    decided = [c for c in copies if c["how"] != "deferred"]
    assert [c["how"] for c in decided] == ["copy"]
    assert decided[0]["offset"] == copy.stat().st_size
    sb.run_once(cfg)
    assert len(sb.records()) == 2010
    sb.verify()


@needs_logrotate
@pytest.mark.integration
def test_copytruncate_copy_recovers_lines_written_just_before_the_truncation(
    sb: Sandbox,
) -> None:
    """Lines written after the tailer's last read of the original, but before
    logrotate truncated it, exist only in the copy: they are read from there."""
    log = sb.log("a.log")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log*", poll_interval="50ms"))
    with LiveDaemon(cfg) as d:
        first = padded(app, "read", 20)
        d.wait_sealed(20)
        with d.tailer._lock:  # the tailer is slow: it reads nothing meanwhile
            unread = padded(app, "unread", 10)
            logrotate(sb.work, log, "copytruncate")
        after = padded(app, "after", 5)
        d.wait_sealed(35)
    app.close()

    copy = sb.log("a.log.1")
    assert copy.read_bytes() == joined(first + unread)
    recs = sb.records()
    assert_once_each(recs, {key_of(log): first + after, key_of(copy): unread})
    sb.verify()


def test_copytruncate_copy_seen_while_logrotate_is_still_writing_it(
    sb: Sandbox, tailers: StartTailer
) -> None:
    """What logrotate's copytruncate does (strace): open(a.log.1, O_CREAT|O_EXCL),
    copy in 8 KiB reads/writes, then ftruncate(a.log). A tailer woken by inotify
    on the creation sees the copy empty; replayed here step by step."""
    log = sb.log("a.log")
    app = Writer(log)
    t, c = tailers(file_settings([sb.logs / "*.log*"], poll_interval="20ms"))
    polls = Polls(t)
    first = padded(app, "read", 20)
    c.wait_records(20)
    copy = sb.log("a.log.1")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    assert wait_until(lambda: any(f["path"] == str(copy) for f in c.named(ev.FILE_OPENED)))
    data = log.read_bytes()
    os.write(fd, data[:100])  # the copy is being written...
    polls.wait(5)  # ...while the tailer looks at it (0.1 s of 20 ms polls)...
    os.write(fd, data[100:])
    os.close(fd)
    os.truncate(log, 0)  # ...then the original truncated
    after = padded(app, "after", 5)
    c.wait_records(25)
    polls.wait(15)  # (0.3 s of 20 ms polls) nothing twice
    assert_once_each(c.records(), {key_of(log): first + after})


@needs_logrotate
@pytest.mark.integration
def test_logrotate_copytruncate_with_copy_not_matched_restarts_at_zero(sb: Sandbox) -> None:
    log = sb.log("a.log")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log", poll_interval="50ms"))
    with LiveDaemon(cfg) as d:
        before = padded(app, "before", 20)
        d.wait_sealed(20)
        size = log.stat().st_size
        logrotate(sb.work, log, "copytruncate")
        after = app.numbered("after", 5)  # fewer bytes than before the truncation
        assert log.stat().st_size < size
        d.wait_sealed(25)
        assert d.events(ev.FILE_TRUNCATED) == 1
    app.close()

    recs = sb.records()
    assert_once_each(recs, {key_of(log): before + after})
    assert recs[20].off == len(after[0]) + 1  # read again from offset 0
    truncated = sb.meta(ev.FILE_TRUNCATED)
    assert len(truncated) == 1
    assert truncated[0]["attrs"]["path"] == str(log)
    assert truncated[0]["attrs"]["offset"] == size
    sb.verify()


def test_truncated_and_regrown_past_offset_between_two_polls(
    sb: Sandbox, tailers: StartTailer
) -> None:
    log = sb.log("a.log")
    app = Writer(log)
    t, c = tailers(file_settings([log], poll_interval="20ms"))
    before = padded(app, "before", 10)
    c.wait_records(10)
    with t._lock:  # between two polls: copytruncate, then a burst of new lines
        os.truncate(log, 0)
        after = padded(app, "after burst", 15)
        assert log.stat().st_size > len(joined(before))
    c.wait_records(25, timeout=3)
    Polls(t).wait(10)  # (0.2 s of 20 ms polls) nothing twice
    assert_once_each(c.records(), {key_of(log): before + after})
    assert len(c.named(ev.FILE_TRUNCATED)) == 1


def test_copytruncate_while_stopped_copy_matched_by_glob(sb: Sandbox) -> None:
    """Truncated while the daemon was down: the copy (found by its fingerprint)
    is read from the sealed offset, the original is re-read from 0."""
    log = sb.log("a.log")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log*"))
    first = padded(app, "first", 10)
    sb.run_once(cfg)
    unread = padded(app, "unread", 5)
    copy = sb.log("a.log.1")
    shutil.copyfile(log, copy)
    os.truncate(log, 0)
    after = padded(app, "after", 3)
    sb.run_once(cfg)
    assert_once_each(sb.records(), {key_of(log): first + after, key_of(copy): unread})
    sb.verify()


# ============================================================ while stopped


def test_rotation_while_stopped_reads_the_rest_of_the_old_file(sb: Sandbox) -> None:
    log, old = sb.log("a.log"), sb.log("a.log.1")
    app = Writer(log)
    cfg = sb.config(sb.file_source("*.log"))
    app.numbered("first", 10)
    sb.run_once(cfg)
    os.rename(log, old)  # the glob *.log does not match a.log.1
    app.numbered("old rest", 4)  # the app wrote on before it reopened
    app.reopen()
    app.numbered("new", 6)
    sb.run_once(cfg)
    sb.run_once(cfg)
    app.close()

    recs = sb.records()
    assert_once_each(recs, app.written)
    assert len(recs) == 20
    resumed = [o["attrs"] for o in sb.meta(ev.FILE_RESUMED)]
    assert any(r["path"] == str(old) for r in resumed)
    sb.verify()


def test_file_rewritten_in_place_while_stopped_is_read_again(sb: Sandbox) -> None:
    log = sb.log("a.log")
    old = lines_of(3, "old")
    write(log, joined(old))
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    key, size = key_of(log), log.stat().st_size
    new = [b"entirely different content " * 2 + b"%d" % i for i in range(4)]
    write(log, joined(new), mode="r+b")  # same inode, new bytes, longer
    assert key_of(log) == key and log.stat().st_size > size
    sb.run_once(cfg)

    recs = sb.records()
    assert [r.message for r in recs] == old + new
    invalid = [o["attrs"] for o in sb.meta(ev.FILE_POSITION_INVALID)]
    assert [(i["path"], i["offset"]) for i in invalid] == [(str(log), size)]
    sb.verify()


def test_file_truncated_and_regrown_while_stopped_is_read_again(sb: Sandbox) -> None:
    """Same first bytes (a long header: the fingerprint matches), but the bytes
    just before the sealed offset differ: the position does not fit."""
    log = sb.log("a.log")
    header = b"# " + b"h" * 300
    write(log, joined([header, b"old-1", b"old-2"]))
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    key, size = key_of(log), log.stat().st_size
    with open(log, "r+b") as fh:
        fh.truncate(0)
    write(log, joined([header, b"new-one", b"new-two", b"new-three"]))
    assert key_of(log) == key and log.stat().st_size > size
    sb.run_once(cfg)

    recs = sb.records()
    assert [r.message for r in recs] == [
        header,
        b"old-1",
        b"old-2",
        header,
        b"new-one",
        b"new-two",
        b"new-three",
    ]
    assert len(sb.meta(ev.FILE_POSITION_INVALID)) == 1
    sb.verify()


def header_log(path: Path, tag: str, n: int) -> list[bytes]:
    """A log that starts with a long header line (longer than the fingerprint)."""
    lines = [b"# columns: " + b"c" * 300, *lines_of(n, tag)]
    write(path, joined(lines))
    return lines


def test_new_file_sharing_a_long_header_is_read_by_once(sb: Sandbox) -> None:
    a, b = sb.log("a.log"), sb.log("b.log")
    a_lines = header_log(a, "a", 50)
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    b_lines = header_log(b, "b", 3)  # a new file of the same kind, shorter than a.log
    sb.run_once(cfg)
    got = by_key(sb.records())
    assert got == {key_of(a): a_lines, key_of(b): b_lines}
    sb.verify()


def test_new_busy_file_sharing_a_long_header_is_read_while_written(
    sb: Sandbox, tailers: StartTailer
) -> None:
    a, b = sb.log("a.log"), sb.log("b.log")
    header_log(a, "a", 50)
    _, c = tailers(file_settings([sb.logs / "*.log"], poll_interval="20ms"))
    c.wait_records(51)
    app = Writer(b)
    app.lines(b"# columns: " + b"c" * 300)
    for i in range(8):  # a line every 150 ms, for 1.2 s (rotate_wait is 1 s)
        app.lines(b"b line %d" % i)
        time.sleep(0.15)
    got = [r.message for r in c.records() if r.path == str(b)]
    app.close()
    assert len(got) >= 7, f"only {len(got)} of 9 lines read while the file was written"


def test_positions_of_files_gone_while_stopped_are_forgotten(sb: Sandbox) -> None:
    """Else the sealing state collects a position per deleted file, for ever
    (it has room for ~1,000: then sealing fails)."""
    a, b = sb.log("a.log"), sb.log("b.log")
    write(a, b"a1\n")
    write(b, b"b1\n")
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    assert sb.positions() == {key_of(a), key_of(b)}
    b.unlink()
    write(a, b"a2\n")
    sb.run_once(cfg)
    assert sb.positions() == {key_of(a)}
    assert [r.message for r in sb.records()] == [b"a1", b"b1", b"a2"]
    sb.verify()


# ============================================================ not files


def test_directories_matching_the_glob_are_skipped_with_an_event(sb: Sandbox) -> None:
    a, b = sb.log("a.log"), sb.log("b.log")
    (sb.logs / "dir.log").mkdir()
    write(a, b"a1\n")
    write(b, b"b1\n")
    cfg = sb.config(sb.file_source("*.log"))
    sb.run_once(cfg)
    b.unlink()  # replaced by a directory while stopped
    b.mkdir()
    write(a, b"a2\n")
    sb.run_once(cfg)

    assert [r.message for r in sb.records()] == [b"a1", b"b1", b"a2"]
    notes = [o["message"] for o in sb.meta(ev.FILE_UNREADABLE)]
    assert sorted(notes) == sorted(
        [f"{sb.logs / 'dir.log'} is not a regular file"] * 2 + [f"{b} is not a regular file"]
    )
    sb.verify()


def test_file_replaced_by_directory_while_running(sb: Sandbox, tailers: StartTailer) -> None:
    a, b = sb.log("a.log"), sb.log("b.log")
    write(a, b"a1\n")
    write(b, b"b1\n")
    t, c = tailers(file_settings([sb.logs / "*.log"], poll_interval="20ms"))
    c.wait_records(2)
    b.unlink()
    polls = Polls(t)
    b.mkdir()
    polls.wait(15)  # many polls (0.3 s of 20 ms ones)
    write(a, b"a2\n")
    c.wait_records(3)
    assert [r.message for r in c.records()] == [b"a1", b"b1", b"a2"]
    notes = [(n, m) for n, m, _ in c.events if n == ev.FILE_UNREADABLE]
    assert notes == [(ev.FILE_UNREADABLE, f"{b} is not a regular file")]  # once, not per poll
    assert t.healthy() == (True, "")


def test_not_a_regular_file_event_names_the_path(sb: Sandbox, tailers: StartTailer) -> None:
    (sb.logs / "dir.log").mkdir()
    _, c = tailers(file_settings([sb.logs / "*.log"], poll_interval="20ms"))
    assert wait_until(lambda: len(c.named(ev.FILE_UNREADABLE)) == 1)
    assert c.named(ev.FILE_UNREADABLE)[0].get("path") == str(sb.logs / "dir.log")


# ============================================================ permissions


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="auditd-file-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(*args: str | Path) -> list[str]:
    return [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        str(CLI_BIN),
        *(str(a) for a in args),
    ]


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_unreadable_file_is_reported_once_and_read_after_chmod(public_tmp: Path) -> None:
    sb = Sandbox(public_tmp)
    for p in [sb.arc.root, *sb.arc.root.rglob("*")]:
        os.chown(p, 65534, 65534, follow_symlinks=False)
    a, secret = sb.log("a.log"), sb.log("secret.log")
    write(a, b"a1\n")
    write(secret, b"s1\n")
    secret.chmod(0)
    cfg = sb.config(sb.file_source("*.log", poll_interval="20ms"))

    proc = subprocess.Popen(as_nobody("run", "--config", cfg), stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # ~50 polls
        write(a, b"a2\n")
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert [r.message for r in sb.records()] == [b"a1", b"a2"]
    unreadable = [o["attrs"] for o in sb.meta(ev.FILE_UNREADABLE)]
    assert unreadable == [
        {"errno": "EACCES", "path": str(secret), "source": SOURCE},
    ]

    secret.chmod(0o644)
    done = subprocess.run(
        as_nobody("run", "--config", cfg, "--once"), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert [r.message for r in sb.records()] == [b"a1", b"a2", b"s1"]
    assert len(sb.meta(ev.FILE_UNREADABLE)) == 1
    sb.verify()


# ============================================================ two sources, one file


def test_config_check_rejects_two_sources_with_the_same_pattern(sb: Sandbox) -> None:
    cfg = sb.config(
        sb.file_source("*.log", name="app"),
        sb.file_source("./*.log", name="other"),
    )
    for args in (("config", "check", cfg), ("run", "--config", cfg, "--once")):
        r = run_cli(*args)
        assert r.code == 2, str(r)
        assert "'app'" in r.err and "'other'" in r.err, str(r)
        assert "Traceback" not in r.err
    assert sb.records(None) == []


def test_two_patterns_matching_the_same_file_read_it_once(sb: Sandbox) -> None:
    a, b, t = sb.log("a.log"), sb.log("b.log"), sb.log("a.txt")
    write(a, b"a1\na2\n")
    write(b, b"b1\n")
    write(t, b"t1\n")
    cfg = sb.config(
        sb.file_source("*.log", name="app"),
        sb.file_source("a.*", name="other"),
    )
    assert run_cli("config", "check", cfg).code == 0
    sb.run_once(cfg)
    sb.run_once(cfg)
    recs = sb.records(None)
    assert [(r.source, r.message) for r in recs if r.path == str(a)] == [
        ("app", b"a1"),
        ("app", b"a2"),
    ]
    others = sorted((r.source, r.path, r.message) for r in recs if r.path != str(a))
    assert others == [("app", str(b), b"b1"), ("other", str(t), b"t1")]
    dup = [o["attrs"] for o in sb.meta(ev.FILE_DUPLICATE)]
    assert [(d["source"], d["other_source"]) for d in dup] == [("other", "app")] * 2
    sb.verify()


# ============================================================ configuration errors


def test_config_unknown_key_names_the_line_and_the_key(sb: Sandbox) -> None:
    cfg = sb.work / "typo.yaml"
    cfg.write_text(
        f"archive:\n"
        f"  path: {sb.arc.root}\n"
        f"sources:\n"
        f"  - name: app\n"
        f"    type: file\n"
        f"    paths: ['{sb.logs}/*.log']\n"
        f"    poll_intervall: 1s\n"
    )
    for args in (("config", "check", cfg), ("run", "--config", cfg, "--once")):
        r = run_cli(*args)
        assert r.code == 2, str(r)
        assert f"{cfg}:7: sources.0.poll_intervall: unknown key" in r.err, str(r)
        assert len(r.err.splitlines()) == 1 and "Traceback" not in r.err, str(r)


def test_config_environment_variables(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    write(sb.log("a.log"), b"from default\n")
    other = sb.work / "elsewhere"
    other.mkdir()
    write(other / "b.log", b"from env\n")
    monkeypatch.delenv("AUDITD_TEST_LOGDIR", raising=False)
    monkeypatch.delenv("AUDITD_TEST_UNSET", raising=False)
    cfg = sb.work / "env.yaml"
    cfg.write_text(
        f"archive:\n"
        f"  path: {sb.arc.root}\n"
        f"sources:\n"
        f"  - name: app\n"
        f"    type: file\n"
        f"    paths: ['${{AUDITD_TEST_LOGDIR:-{sb.logs}}}/*.log']\n"
    )
    r = run_cli("config", "check", cfg)
    assert r.code == 0, str(r)
    assert f"{sb.logs}/*.log" in r.out.decode()
    sb.run_once(cfg)
    monkeypatch.setenv("AUDITD_TEST_LOGDIR", str(other))
    r = run_cli("config", "check", cfg)
    assert r.code == 0 and f"{other}/*.log" in r.out.decode(), str(r)
    sb.run_once(cfg)
    assert [r.message for r in sb.records()] == [b"from default", b"from env"]

    bad = sb.work / "unset.yaml"
    bad.write_text(
        f"archive:\n"
        f"  path: {sb.arc.root}\n"
        f"sources:\n"
        f"  - name: app\n"
        f"    type: file\n"
        f"    paths: ['${{AUDITD_TEST_UNSET}}/*.log']\n"
    )
    for args in (("config", "check", bad), ("run", "--config", bad, "--once")):
        r = run_cli(*args)
        assert r.code == 2, str(r)
        assert f"{bad}:6" in r.err and "${AUDITD_TEST_UNSET}" in r.err, str(r)
        assert "Traceback" not in r.err
    sb.verify()


# ============================================================ copytruncate × kill -9, by hand
#
# The mechanisms behind duplicates the torture test saw under CPU load, each
# replayed with a ManualTailer (it reads only when the test calls poll()).


def test_copy_shorter_than_the_sealed_offset_is_not_read_again_after_kill(
    tmp_path: Path,
) -> None:
    """The tailer read a.log past the point logrotate had copied it at (lines
    written between the copy and the truncate), and was killed before its
    decision about the copy was sealed; a.log was truncated meanwhile. The copy
    is shorter than a.log's sealed offset: all of it is sealed already."""
    log, copy = tmp_path / "a.log", tmp_path / "a.log.1"
    app = Writer(log)
    settings = file_settings([tmp_path / "*.log*"])
    t1, c1 = manual_tailer(settings)
    first = padded(app, "first", 20)
    t1.poll()
    copy.write_bytes(log.read_bytes())  # logrotate's copy
    late = padded(app, "late", 5)
    t1.poll()  # reads the late lines; the copy waits for the truncation (not sealed)
    t1.stop()  # kill -9, everything queued sealed
    os.truncate(log, 0)  # logrotate's truncate, while the daemon is down
    after = padded(app, "after", 3)
    t2, c2 = manual_tailer(settings, c1.positions())
    t2.drain()
    t2.stop()
    app.close()
    assert_once_each(c1.records() + c2.records(), {key_of(log): first + late + after})
    opened = [(f["how"], f["offset"]) for f in c2.named(ev.FILE_OPENED) if f["path"] == str(copy)]
    assert opened == [("copy", copy.stat().st_size)]


def test_original_truncated_in_the_middle_of_comparing_its_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate runs beside the tailer: a.log can be truncated after the tailer
    checked it for a truncation and before it compared the pending copy with it.
    That spoiled comparison must not make the copy a new file (read from 0)."""
    log, copy = tmp_path / "a.log", tmp_path / "a.log.1"
    app = Writer(log)
    t, c = manual_tailer(file_settings([tmp_path / "*.log*"]))
    first = padded(app, "first", 20)
    t.poll()
    copy.write_bytes(log.read_bytes())
    late = padded(app, "late", 5)
    t.poll()  # the copy is pending: a prefix of a.log, which was read further
    after: list[bytes] = []

    def truncated_meanwhile(a: int, b: int, size: int, n: int = 4096) -> bool:
        if not after:
            os.truncate(log, 0)
            after.extend(padded(app, "after", 3))
        return same_end(a, b, size, n)

    monkeypatch.setattr("auditd_py.sources.file.copies.same_end", truncated_meanwhile)
    t.poll()
    assert after
    t.drain()
    t.stop()
    app.close()
    assert_once_each(c.records(), {key_of(log): first + late + after})
    opened = [(f["how"], f["offset"]) for f in c.named(ev.FILE_OPENED) if f["path"] == str(copy)]
    assert opened == [("deferred", 0), ("copy", copy.stat().st_size)]


def test_rotation_between_the_scan_and_the_read_of_a_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate copies and truncates a.log after a poll's scan and before its
    read: the copy must be decided (and its decision queued) before the lines
    of the truncated a.log, whatever the point a kill -9 cuts that sequence at."""
    log, copy = tmp_path / "a.log", tmp_path / "a.log.1"
    app = Writer(log)
    settings = file_settings([tmp_path / "*.log*"])
    t1, c1 = manual_tailer(settings)
    first = padded(app, "first", 20)
    t1.poll()
    before = len(c1.items)
    after: list[bytes] = []
    scan = t1._scan

    def logrotate_after_scan() -> None:
        scan()
        if not after:
            copy.write_bytes(log.read_bytes())
            os.truncate(log, 0)
            after.extend(padded(app, "after", 3))

    monkeypatch.setattr(t1, "_scan", logrotate_after_scan)
    t1.poll()
    t1.stop()
    assert after
    for cut in range(before, len(c1.items) + 1):
        t2, c2 = manual_tailer(settings, c1.positions(cut))
        t2.drain()
        t2.stop()
        assert_once_each(c1.sealed(cut) + c2.records(), {key_of(log): first + after})
    app.close()


def test_file_renamed_between_the_scan_and_its_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan learns a file's identity from stat(path), then opens the path:
    logrotate may shift a.log.1 to a.log.2 and create a new a.log.1 in between.
    The descriptor must not be taken for the file the identity names (its records
    would carry that file's key, and a restart would read the real one again)."""
    log, one, two = tmp_path / "a.log", tmp_path / "a.log.1", tmp_path / "a.log.2"
    app = Writer(log)
    settings = file_settings([tmp_path / "*.log*"])
    t1, c1 = manual_tailer(settings)
    first = padded(app, "first", 20)
    t1.poll()
    one.write_bytes(log.read_bytes())  # a rotation the tailer has not seen yet
    os.truncate(log, 0)
    second = padded(app, "second", 5)
    real_open = os.open
    shifted: list[bytes] = []

    def open_after_logrotate(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(path) == str(one) and not shifted:  # the next rotation, right now
            os.rename(one, two)
            one.write_bytes(log.read_bytes())
            os.truncate(log, 0)
            shifted.extend(padded(app, "third", 2))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", open_after_logrotate)
    t1.poll()
    monkeypatch.undo()
    assert shifted
    t1.poll()
    t1.drain()
    t1.stop()
    t2, c2 = manual_tailer(settings, c1.positions())
    t2.drain()
    t2.stop()
    app.close()
    assert c2.records() == []
    assert_once_each(c1.records(), {key_of(log): first + shifted, key_of(one): second})


def test_file_missed_by_a_racing_listing_at_start_keeps_its_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At start, a directory listing that races with logrotate's renames (a.log.N
    to a.log.N+1, hundreds of them with a long rotate count) can miss a rotated
    file; the search next to the globs finds it. It is still under the globs: it
    must not be let go as rotated away (that forgets its position, and the next
    scan reads the whole file again)."""
    log, old = tmp_path / "a.log", tmp_path / "a.log.1"
    settings = file_settings([tmp_path / "*.log*"])
    old.write_bytes(joined(lines_of(20, "old")))
    app = Writer(log)
    first = padded(app, "first", 5)
    t1, c1 = manual_tailer(settings)
    t1.poll()
    t1.stop()
    paths = FileTailer._paths
    missed: list[str] = []

    def racing_listing(self: FileTailer) -> list[str]:
        found = paths(self)
        if not missed:  # the first listing misses a.log.1, being renamed right then
            missed.append(str(old))
            found.remove(str(old))
        return found

    monkeypatch.setattr(FileTailer, "_paths", racing_listing)
    t2, c2 = manual_tailer(settings, c1.positions())
    monkeypatch.undo()
    assert missed
    t2.rotate_wait = 0.0  # let go of rotated files at once
    t2.poll()
    t2.poll()
    more = padded(app, "more", 2)
    t2.poll()
    t2.stop()
    t3, c3 = manual_tailer(settings, c2.positions(None, c1.positions()))
    t3.drain()
    t3.stop()
    app.close()
    assert not c2.named(ev.FILE_RELEASED)
    assert_once_each(
        c1.records() + c2.records() + c3.records(),
        {key_of(log): first + more, key_of(old): lines_of(20, "old")},
    )


def test_file_rewritten_before_its_first_read_is_fingerprinted_as_read(tmp_path: Path) -> None:
    """A file opened at 0 and truncated (and written again) before its first read:
    its records must carry the fingerprint of the bytes read, or the next start
    finds that their position does not fit the file and reads it all again."""
    log = tmp_path / "a.log"
    app = Writer(log)
    padded(app, "gone", 20)
    settings = file_settings([log])
    t1, c1 = manual_tailer(settings)  # opened at 0, nothing read yet
    os.truncate(log, 0)
    new = padded(app, "new", 3)
    t1.poll()
    t1.stop()
    t2, c2 = manual_tailer(settings, c1.positions())
    t2.drain()
    t2.stop()
    app.close()
    assert_once_each(c1.records(), {key_of(log): new})
    assert c2.records() == []


def test_copy_of_a_file_read_for_less_than_the_fingerprint_is_recognised(
    tmp_path: Path,
) -> None:
    """a.log was read while shorter than fingerprint_bytes; then it grew, was copied
    and truncated between two polls. The copy starts where the read stopped."""
    log, copy = tmp_path / "a.log", tmp_path / "a.log.1"
    app = Writer(log)
    t, c = manual_tailer(file_settings([tmp_path / "*.log*"]))
    first = app.numbered("short", 2)
    t.poll()
    unread = padded(app, "unread", 10)
    copy.write_bytes(log.read_bytes())
    os.truncate(log, 0)
    after = app.numbered("after", 2)
    t.poll()
    t.drain()
    t.stop()
    app.close()
    assert_once_each(c.records(), {key_of(log): first + after, key_of(copy): unread})


def test_copy_too_short_to_compare_is_read_and_the_possible_repeat_meta_logged(
    tmp_path: Path,
) -> None:
    """The one interleaving no reader can decide: the copy is shorter than
    fingerprint_bytes, the tailer read a.log past the copy's end, and was killed
    before the copy was decided. The sealed position holds a hash of a.log's
    first 256 bytes and the 32 bytes before its offset: the copy's bytes can be
    checked against neither. It is read (nothing is lost), and a sealed
    file.duplicate event says how many lines may be sealed twice."""
    log, copy = tmp_path / "a.log", tmp_path / "a.log.1"
    app = Writer(log)
    settings = file_settings([tmp_path / "*.log*"])
    t1, c1 = manual_tailer(settings)
    first = app.numbered("x", 2)
    t1.poll()
    copy.write_bytes(log.read_bytes())
    late = padded(app, "late", 5)
    t1.poll()
    t1.stop()
    os.truncate(log, 0)
    t2, c2 = manual_tailer(settings, c1.positions())
    t2.drain()
    t2.stop()
    app.close()
    assert [r.message for r in c2.records()] == first
    assert [r.message for r in c1.records()] == first + late
    dup = c2.named(ev.FILE_DUPLICATE)
    assert len(dup) == 1
    assert dup[0]["path"] == str(copy) and dup[0]["reason"] == "unverifiable_copy"
    assert (dup[0]["lines"], dup[0]["bytes"]) == (2, copy.stat().st_size)
    assert dup[0]["of"] == key_of(log)


# ============================================================ copytruncate × kill -9, every point
#
# logrotate's copytruncate is two steps: copy a.log to a.log.1, then truncate
# a.log. The daemon may be killed at any moment; what survives is the prefix of
# the tailer's records and events the sealer had made durable. These tests
# replay a rotation step by step with a ManualTailer (it reads only when told),
# kill it after every step and after every sealed item, restart a second tailer
# from exactly the positions that prefix holds, play the remaining steps, and
# check that every line is sealed once; only lines written between a copy and
# its truncate (logrotate destroys them) may be missing. A third start from the
# final positions must then read nothing (like the torture test's last --once).


class Rotating:
    """An application writing numbered lines to ``a.log``, and logrotate's two halves."""

    def __init__(self, logs: Path, rotated: str = "a.log.{n}") -> None:
        self.logs = logs
        self.log = logs / "a.log"
        self.rotated = rotated
        self.app = Writer(self.log)
        self.n = 0
        self.late: set[bytes] = set()
        """Lines written after a copy and before its truncate: only in the original."""
        self.copying = False
        self.copied = b""

    def write(self, n: int, pad: int = 20) -> None:
        lines = [b"L%06d %s" % (self.n + i, b"." * pad) for i in range(n)]
        self.n += n
        self.app.lines(*lines)
        if self.copying:
            self.late.update(lines)

    def copy(self, part: str = "") -> None:
        """logrotate copytruncate, first half: shift a.log.N up, copy a.log to a.log.1
        (``part``: "half" starts the copy, "rest" finishes it)."""
        name = self.rotated.format
        if part != "rest":
            n = 1
            while (self.logs / name(n=n)).exists():
                n += 1
            for k in range(n - 1, 0, -1):
                os.rename(self.logs / name(n=k), self.logs / name(n=k + 1))
            self.copied = self.log.read_bytes()
            fd = os.open(self.logs / name(n=1), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, self.copied[: len(self.copied) // 2] if part == "half" else self.copied)
            os.close(fd)
        if part == "rest":
            with open(self.logs / name(n=1), "r+b") as fh:
                fh.seek(len(self.copied) // 2)
                fh.write(self.copied[len(self.copied) // 2 :])
        self.copying = True

    def truncate(self) -> None:
        """logrotate copytruncate, second half."""
        os.truncate(self.log, 0)
        self.copying = False

    def written(self) -> list[bytes]:
        return [b"L%06d " % i for i in range(self.n)]

    def do(self, step: str) -> None:
        """One step: actions joined by ``+``: ``wN`` writes N lines (``wNs``: short
        ones), ``copy`` and ``trunc`` are logrotate's two halves (``half`` and
        ``rest``: a copy that takes two steps)."""
        for action in step.split("+"):
            if action in ("copy", "half", "rest"):
                self.copy("" if action == "copy" else action)
            elif action == "trunc":
                self.truncate()
            else:
                n = int(action[1:].rstrip("s"))
                self.write(n, pad=0 if action.endswith("s") else 20)


# Each step changes the files; the tailer polls after each one.
SCENARIOS: dict[str, list[str]] = {
    # The tailer reads a.log past the point logrotate copied it at (the lines of the
    # late write), so the copy is shorter than the sealed offset of the original.
    "read_past_the_copy": ["w20", "copy", "w5", "trunc", "w3", "copy", "trunc", "w4"],
    # Fewer bytes read than the fingerprint (fingerprint_bytes) when the rotation came.
    "short_original": ["w2s", "w20+copy+trunc", "w2s", "copy", "trunc+w30"],
    # A whole rotation between two polls: the copy holds lines never read from a.log.
    "rotation_between_polls": ["w20", "w10+copy+w2+trunc+w3", "w2", "copy+trunc+w25"],
    # Killed, or restarted, while logrotate is still writing the copy.
    "copy_in_two_steps": ["w20", "copy", "trunc", "w10", "half", "rest", "w2", "trunc", "w3"],
    # The copy is shorter than the fingerprint, and the original was read past it.
    "tiny_copy": ["w2s", "copy", "w20", "trunc", "w3"],
}
# Rotated names that sort before the original (dateext with `extension .log`).
SCENARIOS["read_past_the_copy:a-{n}.log"] = SCENARIOS["read_past_the_copy"]


@dataclass
class Replayed:
    world: Rotating
    sealed: list[Rec]
    """Sealed before the kill (the first ``cut`` items), then by the restarted tailer."""
    again: list[Rec]
    """Read by a last start from the final positions (must be nothing)."""
    announced: list[dict[str, Any]]
    """The sealed ``file.duplicate`` events that say lines may be sealed twice."""
    queued: int
    """How many items the first tailer queued before the kill."""
    started: int
    """How many items the restarted tailer queued while starting (opening files)."""


def _replay(
    work: Path, scenario: str, kill_after: int, cut: int | None, cut2: int | None = None
) -> Replayed:
    """Run ``steps[:kill_after]`` under one tailer, keep the first ``cut`` items it
    queued (None: all), restart from their positions (if ``cut2`` is given, kill
    that one too while it starts, after ``cut2`` items, and restart again), run the
    rest, drain; then start a last tailer from the final positions."""
    steps = SCENARIOS[scenario]
    logs = work / "logs"
    logs.mkdir(parents=True)
    world = Rotating(logs, *scenario.split(":")[1:])
    settings = file_settings([logs / "*.log*"])
    t1, c1 = manual_tailer(settings)
    for step in steps[:kill_after]:
        world.do(step)
        t1.poll()
    t1.stop()  # kill -9: only the first `cut` items were made durable
    sealed, items = c1.sealed(cut), c1.items[:cut]
    positions = c1.positions(cut)
    t2, c2 = manual_tailer(settings, positions)
    started = len(c2.items)
    if cut2 is not None:  # killed again before it read anything
        t2.stop()
        sealed, items = sealed + c2.sealed(cut2), items + c2.items[:cut2]
        positions = c2.positions(cut2, positions)
        t2, c2 = manual_tailer(settings, positions)
    for step in steps[kill_after:]:
        world.do(step)
        t2.poll()
    t2.drain()
    t2.stop()
    t3, c3 = manual_tailer(settings, c2.positions(None, positions))
    t3.drain()
    t3.stop()
    world.app.close()
    events = [i for i in items + c2.items if isinstance(i, tuple)]
    announced = [f for name, _, f in events if name == ev.FILE_DUPLICATE]
    return Replayed(world, sealed + c2.sealed(), c3.sealed(), announced, len(c1.items), started)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_copytruncate_killed_at_every_point_seals_each_line_once(
    tmp_path: Path, scenario: str
) -> None:
    steps = SCENARIOS[scenario]
    runs = 0
    announced = 0
    for kill_after in range(len(steps) + 1):
        queued = _replay(tmp_path / f"{kill_after}", scenario, kill_after, None).queued
        for cut in range(queued + 1):
            r = _replay(tmp_path / f"{kill_after}-{cut}", scenario, kill_after, cut)
            # and killed again while restarting (before reading anything)
            for cut2 in [None, *range(r.started)]:
                if cut2 is not None:
                    work = tmp_path / f"{kill_after}-{cut}-{cut2}"
                    r = _replay(work, scenario, kill_after, cut, cut2)
                runs += 1
                where = (
                    f"{scenario}: killed after step {kill_after} with {cut} of {queued} "
                    f"items sealed" + ("" if cut2 is None else f", then after {cut2} more")
                )
                got = [rec.message[:8] for rec in r.sealed]
                twice = sorted({m for m in got if got.count(m) > 1})
                # Only where the tailer cannot tell (see tiny_copy) may lines be sealed
                # twice, and then a sealed file.duplicate event says how many at most.
                may = sum(int(a["lines"]) for a in r.announced)
                assert len(got) - len(set(got)) <= may, f"{where}: sealed twice: {twice}"
                announced += len(r.announced)
                assert not r.again, f"{where}: read again: {[x.message for x in r.again]}"
                late = {m[:8] for m in r.world.late}
                missing = set(r.world.written()) - set(got)
                assert missing <= late, f"{where}: lost {sorted(missing - late)}"
    assert runs > 50
    if scenario == "tiny_copy":
        # Killed after reading the original past the copy's end and before the copy was
        # decided: the copy, shorter than fingerprint_bytes, cannot be compared with the
        # sealed position (a hash of 256 bytes and the 32 bytes before its offset).
        assert announced
    else:
        assert not announced, f"{scenario}: {announced} file.duplicate events"
