"""No thread can hang the daemon (issue 14, item 3).

A watched file swapped for a FIFO between ``stat()`` and ``open()`` is refused,
not opened for a read that never returns. A file source thread that makes no
progress (here: one waiting for the lock that a read never gives back) turns
unhealthy after its heartbeat ages, the daemon's watch seals it once, and
``stop()`` returns all the same.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from auditd_py import events as ev
from auditd_py.clock import ManualClock
from auditd_py.daemon.narrator import Narrator
from auditd_py.daemon.sourcewatch import SourceWatch
from auditd_py.sources.file.tailer import FileTailer
from auditd_py.sources.heartbeat import STUCK_AFTER
from tests.support.files import Collector, file_settings, manual_tailer
from tests.support.wait import wait_until


def _release(fifo: Path) -> None:
    """Let a reader blocked opening ``fifo`` go on (no reader: nothing to do)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_swapped_in_between_stat_and_open_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    t, c = manual_tailer(file_settings([tmp_path / "*.log"]))
    try:
        log.write_bytes(b"one\n")
        st = os.stat(log)  # the scan's stat ...
        log.unlink()
        os.mkfifo(log)  # ... and what the open finds
        got: list[Any] = []
        opener = threading.Thread(target=lambda: got.append(t._open(str(log), st, at_end=False)))
        opener.start()
        opener.join(5)
        blocked = opener.is_alive()
        _release(log)
        opener.join(5)
        assert not blocked, "the open of a FIFO blocked the tailer"
        assert got == [None]
        refused = [e for e in c.events if e[0] == ev.FILE_UNREADABLE]
        assert refused and "not a regular file" in refused[0][1], c.events
        t.poll()  # and the scan after it keeps refusing it, without blocking
        assert not c.fields
    finally:
        t.stop()


class _Meta:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, name: str, message: str, **fields: Any) -> None:
        self.events.append((name, message, fields))

    def log_only(self, name: str, message: str, **fields: Any) -> None:
        pass


def test_a_stuck_tailer_is_unhealthy_reported_once_and_stops(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"one\n")
    clock = ManualClock()
    t = FileTailer(file_settings([tmp_path / "*.log"], poll_interval="20ms"), clock)
    c = Collector()
    t.start(c, c, {})
    meta = _Meta()
    watch = SourceWatch(Narrator(meta))
    try:
        c.wait_records(1)
        assert t.healthy() == (True, "")
        watch.check([t])
        assert not meta.events
        with t._lock:  # what a read that never returns holds: the loop cannot go on
            # each check moves the clock on a second: beats stop once the loop is blocked
            def aged() -> bool:
                clock.advance(1.0)
                return not t.healthy()[0]

            assert wait_until(aged, 10)
            ok, reason = t.healthy()
            assert not ok and "stuck" in reason, reason
            watch.check([t])
            watch.check([t])  # once per stuck spell
            assert [e[0] for e in meta.events] == [ev.SOURCE_ERROR]
            assert meta.events[0][2]["stuck_seconds"] >= STUCK_AFTER
            stopper = threading.Thread(target=t.stop)
            stopper.start()
            stopper.join(10)
            assert not stopper.is_alive(), "stop() waited for the stuck thread"
    finally:
        t.stop()  # the lock is free now: closes the files
