"""Carrying out a reload: the plan (:mod:`~auditd_py.daemon.reload`) applied to the sources.

Stopped sources put their last complete lines in the queue; a new instance must
start from the position after them, so the reloader waits for a barrier (every
item queued before it sealed) and then starts sources from the writer's
positions: no line is lost or read twice across a reload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from auditd_py import config, control
from auditd_py.clock import Clock
from auditd_py.config import Config, Loaded, SyslogSource
from auditd_py.daemon import reload as planner
from auditd_py.daemon.narrator import Narrator
from auditd_py.daemon.queue import Barrier, BatchQueue
from auditd_py.daemon.sealloop import SealLoop
from auditd_py.daemon.signals import Flags
from auditd_py.daemon.sourceset import SourceSet
from auditd_py.daemon.status import ReloadStatus
from auditd_py.errors import ConfigError
from auditd_py.store.writer import ArchiveWriter


class Host(Protocol):
    """What a reload needs of the daemon (:class:`~auditd_py.daemon.supervisor.Daemon`)."""

    loaded: Loaded
    cfg: Config
    once: bool
    clock: Clock
    notify: Callable[[str], bool]
    say: Narrator
    flags: Flags
    queue: BatchQueue
    sourceset: SourceSet
    sealer: SealLoop | None
    writer: ArchiveWriter | None
    failure: BaseException | None
    tick: float

    def status_line(self) -> str: ...

    def check(self) -> None: ...


PARSE_TIMEOUT = 10.0
"""Seconds a reload may spend reading and parsing the configuration file."""


def parse_off_loop(
    path: str, stopping: Callable[[], bool], timeout: float = PARSE_TIMEOUT
) -> Loaded:
    """``config.load(path)`` in a thread of its own, given up after ``timeout`` seconds.

    The main loop waits for it, but never longer than ``timeout``: a file that
    cannot be read (a FIFO nobody writes) or parsed in time is rejected, and
    the running configuration stays; the abandoned thread ends with the process.
    A stop asked meanwhile (``stopping()``, SIGTERM) ends the wait at once.
    """
    box: list[Loaded | ConfigError] = []

    def run() -> None:
        try:
            box.append(config.load(path))
        except ConfigError as exc:
            box.append(exc)
        except Exception as exc:  # any parse failure rejects the reload
            box.append(ConfigError(f"{path}: cannot be parsed: {exc!r}", file=path))

    t = threading.Thread(target=run, name="auditd-reload-parse", daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while t.is_alive() and time.monotonic() < deadline and not stopping():
        t.join(0.05)  # signal handlers run between the waits
    if not box:
        raise ConfigError(
            f"{path}: not read and parsed within {timeout:g}s; the configuration was not reloaded",
            file=path,
        )
    if isinstance(box[0], ConfigError):
        raise box[0]
    return box[0]


class Reloader:
    """SIGHUP and ``auditd-py reload``: check, plan, stop, wait, start, tell."""

    def __init__(self, d: Host) -> None:
        self.d = d
        self.status = ReloadStatus(True, d.clock.now_ns() / 1e9)
        """The last outcome (``/metrics``: ``auditd_py_config_last_reload_*``)."""

    def reload(self, *, notify: bool = True) -> control.Reloaded:
        """Re-read the config file (SIGHUP, or ``auditd-py reload`` with ``notify=False``).

        ``auditd-py reload`` is the unit's ExecReload=: systemd is already in its
        reloading state until that command exits, so no RELOADING=1/READY=1 is sent.
        """
        d = self.d
        if notify:
            d.notify(
                f"RELOADING=1\nMONOTONIC_USEC={int(d.clock.monotonic() * 1e6)}\n"
                "STATUS=reloading the configuration"
            )
        try:
            done = self._reload()
        except Exception as exc:  # a bug must not take the running daemon down
            d.say.error(f"reload failed: {exc!r}", path=d.loaded.path)
            done = control.Reloaded(False, f"reload failed: {exc!r}")
        try:
            ok = bool(done.ok)
            when = d.clock.now_ns() / 1e9 if ok else self.status.success_timestamp
            self.status = ReloadStatus(ok, when)
            return done
        finally:
            d.notify(("READY=1\n" if notify else "") + f"STATUS={d.status_line()}")

    def _reload(self) -> control.Reloaded:
        d = self.d
        path = d.loaded.path
        try:
            new = parse_off_loop(path, lambda: d.flags.stop)
            problems = config.check_config(new)
            if problems:
                raise ConfigError("\n".join(problems))
        except ConfigError as exc:  # its message names the file and line already
            reason = exc.message if exc.message.startswith(path) else str(exc)
            return control.Reloaded(False, d.say.config_rejected(path, reason))
        p = planner.plan(d.cfg, new.config, d.sourceset.failed)
        if p.refused:
            return control.Reloaded(False, d.say.config_rejected(path, "; ".join(p.refused)))
        old = {s.name: s for s in d.cfg.sources}
        want = {s.name: s for s in new.config.sources}
        stopped = False
        for n in p.to_stop:
            if d.sourceset.retire(n):
                stopped = True
                if n in p.removed:
                    d.say.source_removed(n, old[n].type)
        positions = self._positions(wait=stopped)
        if positions is None:  # stopping, or the seal loop failed: no new source can start
            return control.Reloaded(False, "the daemon is stopping; nothing was reloaded")
        failed: list[str] = []
        for n in p.to_start:
            sc = want[n]
            if d.once and isinstance(sc, SyslogSource):
                continue
            if not d.sourceset.start_one(sc, positions, restarted=n not in p.added):
                failed.append(n)
        d.cfg, d.loaded = new.config, new
        d.say.config_reloaded(
            path,
            new.digest,
            list(want),
            added=p.added,
            removed=p.removed,
            changed=p.changed,
            retried=p.retried,
            failed=failed,
        )
        if failed:
            return control.Reloaded(
                False,
                f"configuration {path} applied, but source(s) {', '.join(failed)} cannot start: "
                + "; ".join(f"{n}: {d.sourceset.failed[n]}" for n in failed),
            )
        return control.Reloaded(
            True,
            f"configuration {path} reloaded (added {list(p.added) or 'none'}, removed "
            f"{list(p.removed) or 'none'}, changed {list(p.changed) or 'none'})",
        )

    def _positions(self, *, wait: bool) -> dict[str, Any] | None:
        """The writer's positions, once everything queued so far is sealed (if ``wait``)."""
        d = self.d
        sealer, w = d.sealer, d.writer
        assert sealer is not None and w is not None
        if wait:
            barrier = Barrier(threading.Event())
            d.queue.put_barrier(barrier)
            while not barrier.done.wait(d.tick):
                # A stuck seal loop also stops the watchdog: systemd restarts us, and
                # the next start resumes every source from its sealed position.
                if d.flags.stop or d.failure is not None or not sealer.alive():
                    return None
                d.check()  # a suspended seal loop is resumed from here too
        with sealer.lock:
            return dict(w.positions)
