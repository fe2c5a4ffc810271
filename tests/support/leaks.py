"""What a test leaves behind: threads, open file descriptors, child processes.

:func:`snapshot` records what is alive in this process right now; :func:`leaked`
compares a later state with it, waiting a little for things that are on their
way out (a thread joining, a daemon exiting after SIGTERM). Identities are
chosen so that a reused number does not hide a leak: a thread is its object
(or, for a thread no Python code started, its native id and name), a
descriptor is its number *and* what it points to (``socket:[inode]``, a path),
a process is its pid *and* its start time.

Only what appeared after the snapshot counts, so a server that a module- or
session-scoped fixture started before the snapshot was taken is never a leak;
:data:`ALLOWED` names the few things that libraries start once, lazily, and
keep for the life of the process, and the descriptors a known watchdog race
orphans are not counted (:func:`track_watchdog`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")

#: Lazily started, process-lifetime resources of libraries (regexes on the description).
ALLOWED: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    threads: dict[object, str]
    fds: dict[tuple[int, str], str]
    procs: dict[tuple[int, str], str]

    def keys(self) -> set[object]:
        return {*self.threads, *self.fds, *self.procs}


def _threads() -> dict[object, str]:
    out: dict[object, str] = {}
    python = set()
    for t in threading.enumerate():
        if t.is_alive():
            out[t] = f"thread {t.name!r} ({type(t).__name__}, daemon={t.daemon})"
            python.add(t.native_id)
    # threads started by C code: no Thread object, only a task of this process
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    for tid in tasks:
        if int(tid) in python or int(tid) == os.getpid():
            continue
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        out[("task", int(tid), comm)] = f"native thread {tid} ({comm})"
    return out


def _fds() -> dict[tuple[int, str], str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory's own descriptor, closed already
            continue
        out[(int(name), target)] = f"fd {name} -> {target}"
    return out


def _stat(pid: str) -> tuple[int, str, str] | None:
    """(ppid, state, start time) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[1]), rest[0], rest[19]


def _pid_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _procs() -> dict[tuple[int, str], str]:
    """The live (not zombie) descendants of this process."""
    parent: dict[int, tuple[int, str, str]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(d)) is not None:
            parent[int(d)] = st
    me = os.getpid()
    ours = _pid_ns("self")
    out = {}
    for pid, (_, state, start) in parent.items():
        p, hops = pid, 0
        while p in parent and p != me and hops < 64:
            p, hops = parent[p][0], hops + 1
        if p != me or pid == me or state == "Z":
            continue
        if _pid_ns(str(pid)) != ours:
            # inside a container (tests/container.py): its processes come and go with
            # the services in it; the container itself (nspawn, here) still counts
            continue
        try:
            cmd = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        out[(pid, start)] = f"process {pid}: {cmd.strip()[:200]}"
    return out


#: Descriptors of watchdog inotify instances that their owner closed and that
#: watchdog has not released yet (see :func:`track_watchdog`).
_WATCHDOG_CLOSING: set[int] = set()


def track_watchdog() -> None:
    """Note the descriptors of every watchdog inotify instance its owner closes.

    watchdog 7.1's ``InotifyFD`` starts with ``_is_reading = True``, so a
    ``close()`` that comes before its reader thread's first read only pokes the
    wake-up pipe and leaves the closing to a reader that, stopped already,
    never reads: the inotify descriptor and the pipe stay open for good (seen
    about once in 40 quick start/stop cycles of a file source, and in the
    suite now and then). That is the library's leak, not the doing of the
    test that stopped the source, so such descriptors are not counted: they
    are noted when ``close()`` is called and forgotten when watchdog really
    closes them (a descriptor still noted is still open, so its number cannot
    have been reused).
    """
    try:
        from watchdog.observers.inotify_c import InotifyFD
    except ImportError:  # pragma: no cover - no watchdog, no race
        return
    if getattr(InotifyFD, "_leak_check_tracked", False):
        return
    close, release = InotifyFD.close, InotifyFD._close_resources

    def tracked_close(self: InotifyFD) -> None:
        _WATCHDOG_CLOSING.update((self._inotify_fd, self._kill_r, self._kill_w))
        close(self)

    def tracked_release(self: InotifyFD) -> None:
        _WATCHDOG_CLOSING.difference_update((self._inotify_fd, self._kill_r, self._kill_w))
        release(self)

    InotifyFD.close = tracked_close  # type: ignore[method-assign]
    InotifyFD._close_resources = tracked_release  # type: ignore[method-assign]
    InotifyFD._leak_check_tracked = True  # type: ignore[attr-defined]


def snapshot() -> Snapshot:
    return Snapshot(_threads(), _fds(), _procs())


def _new(before: Snapshot) -> Snapshot:
    now = snapshot()
    old = before.keys()

    def keep(d: dict[K, str]) -> dict[K, str]:
        return {
            k: v for k, v in d.items() if k not in old and not any(a.search(v) for a in ALLOWED)
        }

    fds = {k: v for k, v in keep(now.fds).items() if k[0] not in _WATCHDOG_CLOSING}
    return Snapshot(keep(now.threads), fds, keep(now.procs))


def leaked(before: Snapshot, timeout: float = 2.0) -> list[str]:
    """What is alive now and was not at ``before``, after waiting up to ``timeout``
    for it to go; empty if nothing leaked."""
    deadline = time.monotonic() + timeout
    while True:
        new = _new(before)
        if new.keys():
            gc.collect()  # an unreachable socket or file is closed, not leaked
            new = _new(before)
        if not new.keys() or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return [*new.threads.values(), *new.fds.values(), *new.procs.values()]


def kill_leaked(before: Snapshot) -> None:
    """SIGKILL (and reap) the processes that appeared since ``before``, so that a
    leak fails one test, not the next ones or the end of the session."""
    for pid, _ in _new(before).procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        with contextlib.suppress(ChildProcessError):  # a grandchild: its parent reaps it
            os.waitpid(pid, 0)
