"""The daemon verifies itself: every closed segment, again and again, in the background.

Every ``self_check.interval`` a thread starts one worker process
(:mod:`~auditd_py.daemon.selfcheck_worker`: nice 19, bounded CPU share and
address space, streaming, so bounded memory) that verifies every closed segment
in public-key mode, and reads its one JSON document. The result is sealed when
it says something new (``verify.passed`` when more records are verified,
``verify.failed`` at once) and kept as a frozen
:class:`~auditd_py.daemon.status.SelfCheckStatus` that the status snapshot
shows in ``/health`` (a failure makes it 503), ``/metrics`` and ``status``.
A failure stays until the daemon restarts: bytes flipped back do not undo it.
A check that cannot run to a verdict (a segment retired or compressed under
it, the worker killed) is inconclusive and retried at the next interval.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from auditd_py.clock import Clock
from auditd_py.config import SelfCheckSettings
from auditd_py.daemon.narrator import Narrator
from auditd_py.daemon.status import SelfCheckStatus

WORKER = "auditd_py.daemon.selfcheck_worker"


class SelfCheck:
    """The background thread and its worker processes, one check at a time."""

    def __init__(
        self,
        archive: Path,
        settings: SelfCheckSettings,
        open_segment: Callable[[], str | None],
        say: Narrator,
        clock: Clock,
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.open_segment = open_segment
        self.say = say
        self.clock = clock
        self.status = SelfCheckStatus(interval_seconds=settings.interval / 1e9)
        """Replaced whole after each check (a frozen value: readers never see half of one)."""
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="auditd-selfcheck", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, and a worker under way (it only reads)."""
        self._stop.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval / 1e9):
            self.check()

    def argv(self) -> list[str]:
        s = self.settings
        before = self.open_segment()
        return [
            sys.executable,
            "-m",
            WORKER,
            str(self.archive),
            *(["--before", before] if before else []),
            "--cpu-share",
            repr(s.cpu_share),
            "--max-memory",
            str(s.max_memory),
        ]

    def check(self) -> SelfCheckStatus:
        """One check, now: run the worker, record and seal what it found."""
        timeout = (self.settings.timeout or max(self.settings.interval, 60 * 10**9)) / 1e9
        with self._lock:
            if self._stop.is_set():
                return self.status
            self._proc = subprocess.Popen(  # noqa: S603 - our own module, by sys.executable
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        proc = self._proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return self._inconclusive(f"still running after {timeout:g}s; ended")
        finally:
            with self._lock:
                self._proc = None
        if self._stop.is_set():
            return self.status
        try:
            doc = orjson.loads(out)
        except orjson.JSONDecodeError:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return self._inconclusive(f"worker exited {proc.returncode}: {tail[0]}")
        if not isinstance(doc, dict):
            return self._inconclusive("worker printed no document")
        return self._record(doc)

    def _record(self, doc: dict[str, Any]) -> SelfCheckStatus:
        failures = doc.get("failures") or []
        if not doc.get("ok") and not failures:
            return self._inconclusive(str(doc.get("message") or doc.get("error")))
        v = doc.get("verified") or {}
        prev = self.status
        now = self.clock.now_ns() / 1e9
        prev = dataclasses.replace(
            prev, checks=prev.checks + 1, last_check_timestamp=now, last_error=None
        )
        if failures:
            f = failures[0]
            self.status = dataclasses.replace(
                prev,
                state="failed",
                failed_checks=prev.failed_checks + 1,
                code=f.get("code"),
                message=f.get("message"),
                file=f.get("file"),
                line=f.get("line"),
                seq=f.get("seq"),
            )
            if not prev.failed or (prev.code, prev.file, prev.seq) != (
                f.get("code"),
                f.get("file"),
                f.get("seq"),
            ):
                self.say.verify_failed(f, v)
            return self.status
        seq_first, seq_end = v.get("first_seq"), v.get("seq_end")
        segments = len(v.get("segments") or [])
        fresh = (prev.seq_first, prev.seq_end) != (seq_first, seq_end)
        self.status = dataclasses.replace(
            prev,
            state="failed" if prev.failed else "passed",  # a failure stays
            seq_first=seq_first,
            seq_end=seq_end,
            segments=segments,
        )
        if fresh and segments:
            self.say.verify_passed(int(seq_first or 0), int(seq_end or 0), segments)
        return self.status

    def _inconclusive(self, why: str) -> SelfCheckStatus:
        prev = self.status
        self.status = dataclasses.replace(
            prev, inconclusive_checks=prev.inconclusive_checks + 1, last_error=why
        )
        self.say.verify_inconclusive(why)
        return self.status
