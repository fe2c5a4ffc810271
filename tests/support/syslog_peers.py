"""Real syslog senders and relays for the interop tests: a collecting sink, the
relays (rsyslog, and syslog-ng run from the files .ci/bootstrap unpacked), and a
syslog TIMESTAMP read as an instant."""

from __future__ import annotations

import calendar
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from auditd_py.record import Fields

SYSLOG_NG_ROOT = Path(os.environ.get("SYSLOG_NG_CACHE", "/var/cache/auditd-py-tests/syslog-ng"))
SYSLOG_NG = SYSLOG_NG_ROOT / "usr/sbin/syslog-ng"


class Collect:
    """A Sink that keeps every record."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._recs: list[Fields] = []

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        with self._cv:
            self._recs.extend(batch)
            self._cv.notify_all()
        return True

    def room(self) -> int:
        return 1 << 30

    @property
    def records(self) -> list[Fields]:
        with self._cv:
            return list(self._recs)

    def wait(self, pred: Callable[[list[Fields]], bool], timeout: float = 15.0) -> list[Fields]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred(self._recs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; have {len(self._recs)}: {self._recs[-5:]}")
                self._cv.wait(min(left, 0.05))
            return list(self._recs)

    def settle(self, quiet: float = 0.3) -> list[Fields]:
        """The records once none came for ``quiet`` seconds (to check 'exactly once')."""
        n = -1
        while True:
            recs = self.records
            if len(recs) == n:
                return recs
            n = len(recs)
            time.sleep(quiet)


class NullMeta:
    def event(self, name: str, message: str, **fields: Any) -> None:
        pass


_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_BSD = re.compile(
    r"([A-Za-z]{3}) +0?([0-9]{1,2})(?: ([0-9]{4}))? ([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
)


def instant(ts: str, near: float) -> float:
    """A syslog TIMESTAMP as seconds since the epoch. RFC 3164 ones carry no zone
    and no year: read in the local zone, in the year that puts them nearest ``near``."""
    m = _BSD.fullmatch(ts)
    if m is None:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    mon, day, year, hh, mm, ss, frac = m.groups()
    best: float | None = None
    this_year = time.localtime(near).tm_year
    for y in [int(year)] if year else [this_year - 1, this_year, this_year + 1]:
        t = time.mktime((y, _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss), 0, 0, -1))
        t += float(frac or 0)
        if best is None or abs(t - near) < abs(best - near):
            best = t
    assert best is not None
    return best


class Relay:
    """A relay process (rsyslogd, syslog-ng) started from its own config in ``work``."""

    def __init__(
        self, argv: list[str], work: Path, env: dict[str, str] | None = None, name: str = "relay"
    ) -> None:
        self.out = work / f"{name}.out"
        self._log = open(self.out, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    def alive(self) -> None:
        assert self.proc.poll() is None, self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def syslog_ng_argv(conf: Path, work: Path) -> tuple[list[str], dict[str, str]]:
    """syslog-ng in the foreground from the unpacked package, with its own state files."""
    lib = SYSLOG_NG_ROOT / "usr/lib/syslog-ng"
    mods = next(lib.glob("3.*"))
    argv = [
        str(SYSLOG_NG),
        "-F",
        "-f", str(conf),
        "-R", str(work / "syslog-ng.persist"),
        "-p", str(work / "syslog-ng.pid"),
        "-c", str(work / "syslog-ng.ctl"),
        f"--module-path={mods}",
    ]  # fmt: skip
    return argv, {"LD_LIBRARY_PATH": str(lib)}


JOURNALD = next(
    (p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
     if os.path.exists(p)),
    None,
)  # fmt: skip

_JOURNALD_NS = """set -e
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/systemd/journal
mount -t tmpfs tmpfs /run/log
mount --bind "$1" /etc/systemd/journald.conf
touch /run/systemd/journal/syslog
mount --bind "$2" /run/systemd/journal/syslog
exec "$3"
"""
JOURNALD_CONF = """[Journal]
Storage=volatile
ForwardToSyslog=yes
ReadKMsg=no
RateLimitBurst=0
"""


def journald_argv(sock: Path, work: Path) -> list[str]:
    """A private systemd-journald: in its own mount namespace, with a tmpfs
    /run/systemd/journal where our unix datagram socket ``sock`` is bind-mounted
    as ``syslog`` (where ForwardToSyslog sends), and its own journald.conf."""
    assert JOURNALD is not None
    conf = work / "journald.conf"
    conf.write_text(JOURNALD_CONF)
    script = work / "journald-ns.sh"
    script.write_text(_JOURNALD_NS)
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", str(script), str(conf), str(sock), JOURNALD,
    ]  # fmt: skip


def in_namespace_of(pid: int, *argv: str, stdin: bytes | None = None) -> int:
    """Run ``argv`` in the mount namespace of process ``pid`` (to reach its
    journald); returns its pid (nsenter execs it: no fork without a pid namespace)."""
    with subprocess.Popen(
        ["nsenter", "--mount", f"--target={pid}", "--", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        out, err = proc.communicate(stdin, timeout=20)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv, out, err)
        return proc.pid
