"""Disk pressure: auditd's ladder of thresholds on the archive's file system.

* below ``space_left``: a warning is meta-logged (``disk.space_left``);
* below ``admin_space_left``: ``admin_space_left_action`` runs;
* a write refused for lack of space (or less than :data:`FULL_MARGIN` left):
  ``disk_full_action`` runs.

Actions: ``rotate`` (apply retention early, deleting the oldest closed,
checkpointed segments until ``space_left`` is free again, each deletion sealed),
``suspend`` (take nothing more from the sources until space is back above
``admin_space_left``: file and journald sources wait and lose nothing),
``halt`` (the daemon exits with status 3, so systemd and the operator notice),
``exec`` (run a command, once per crossing). Levels are edge-triggered: an
event and an action on each change of level, not on every check; as in
auditd, every level crossed runs its action, in order, even when one reading
crosses several (a disk that fills faster than ``check_interval``). Besides
the timer, the level is read after each group commit (:meth:`DiskLadder.worse`)
and at once after a refused write, and every second while reading is suspended.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from auditd_py import events as ev
from auditd_py.clock import Clock
from auditd_py.config import DiskSettings
from auditd_py.daemon.narrator import Narrator
from auditd_py.store.reserve import Reserve

FULL_MARGIN = 1 << 20
"""Less than this available counts as full: the next group commit may not fit."""
EXIT_HALTED = 3
"""``auditd-py run`` exit status when a disk action halted the daemon."""
EXIT_UNWRITTEN = 4
"""``auditd-py run`` exit status when asked to stop while the disk was still full: sealed
records were not written (file and journald sources read them again on the next start)."""
SUSPENDED_RECHECK = 1.0
"""Seconds between readings while reading is suspended (no commit reads the disk then)."""


class Level(IntEnum):
    OK = 0
    LOW = 1
    """below space_left"""
    ADMIN = 2
    """below admin_space_left"""
    FULL = 3


@dataclass(frozen=True, slots=True)
class Reading:
    level: Level
    free: int
    total: int
    space_left: int
    admin_space_left: int


def read(path: Path, cfg: DiskSettings, *, writes_refused: bool) -> Reading:
    st = os.statvfs(path)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return classify(free, total, cfg, writes_refused=writes_refused)


def classify(free: int, total: int, cfg: DiskSettings, *, writes_refused: bool) -> Reading:
    """Pure: the level for ``free`` of ``total`` bytes."""
    low, admin = cfg.space_left.of(total), cfg.admin_space_left.of(total)
    if writes_refused or free < FULL_MARGIN:
        level = Level.FULL
    elif free < admin:
        level = Level.ADMIN
    elif free < low:
        level = Level.LOW
    else:
        level = Level.OK
    return Reading(level, free, total, low, admin)


def action_for(level: Level, cfg: DiskSettings) -> str | None:
    if level == Level.FULL:
        return cfg.disk_full_action
    if level == Level.ADMIN:
        return cfg.admin_space_left_action
    return None


class Runner:
    """The ``exec`` action's children: started without a shell, reaped, never left behind."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(  # noqa: S603 - argv from the operator's config, no shell
            argv,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            close_fds=True,
        )
        self.children.append(child)
        return child

    def reap(self) -> list[tuple[list[str], int]]:
        """Finished children as (argv, exit status)."""
        done = [(c, c.poll()) for c in self.children]
        self.children = [c for c, rc in done if rc is None]
        return [([str(a) for a in c.args], rc) for c, rc in done if rc is not None]  # type: ignore[union-attr]

    def stop(self, timeout: float = 5.0) -> None:
        for c in self.children:
            try:
                c.wait(timeout)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        self.children = []


class Loop(Protocol):
    """What the ladder needs of the seal loop."""

    suspended: threading.Event
    disk_full_since: float | None

    def request_retention(self, need_free: int | None = None) -> None: ...


class DiskLadder:
    """The levels checked every ``disk.check_interval`` (or at once after a refused write).

    Edge-triggered: an event and an action on each change of level; ``rotate``
    keeps asking for retention while the level stays bad.
    """

    def __init__(
        self,
        cfg: DiskSettings,
        archive: Path,
        loop: Loop,
        say: Narrator,
        clock: Clock,
        reserve: Reserve | None = None,
    ) -> None:
        self.cfg = cfg
        self.archive = archive
        self.loop = loop
        self.say = say
        self.clock = clock
        self.reserve = reserve
        self.reading: Reading | None = None
        self.suspended = False
        self.halted: str | None = None
        """Why a ``halt`` action stopped the daemon (exit :data:`EXIT_HALTED`)."""
        self.runner = Runner()
        self._checked = 0.0

    @property
    def level(self) -> Level:
        return self.reading.level if self.reading is not None else Level.OK

    def check_now(self) -> None:
        """The next :meth:`check` reads the disk whatever the interval (a write was refused)."""
        self._checked = 0.0

    def worse(self) -> bool:
        """Whether the disk is at a worse level than last read (after each group commit:
        cheap, one statvfs; the caller then asks for :meth:`check_now`)."""
        try:
            r = read(self.archive, self.cfg, writes_refused=False)
        except OSError:
            return False
        return r.level > self.level

    def check(self) -> bool:
        """Read the level if due and act on it; True when a ``halt`` asks the daemon to stop."""
        for argv, rc in self.runner.reap():
            self.say.disk_command_exited(argv, rc)
        now = self.clock.monotonic()
        interval = self.cfg.check_interval / 1e9
        if self.suspended:
            interval = min(interval, SUSPENDED_RECHECK)
        if now - self._checked < interval:
            return False
        self._checked = now
        refused = self.loop.disk_full_since is not None
        r = read(self.archive, self.cfg, writes_refused=refused)
        old = self.level
        self.reading = r
        halt = False
        if r.level != old:
            halt = self._changed(old, r)
        if action_for(r.level, self.cfg) == "rotate":  # deletes the oldest while still bad
            self.loop.request_retention(need_free=r.space_left)
        if r.level <= Level.LOW:
            if self.suspended:
                self.suspended = False
                self.loop.suspended.clear()
                self.say.disk_action(
                    f"resumed reading: {r.free} bytes free (admin_space_left {r.admin_space_left})",
                    "resume",
                    free=r.free,
                )
            if self.reserve is not None:
                self.reserve.ensure(r.free, r.space_left)
        return halt

    def _changed(self, old: Level, r: Reading) -> bool:
        facts = {
            "free": r.free,
            "total": r.total,
            "space_left": r.space_left,
            "admin_space_left": r.admin_space_left,
        }
        if r.level < old:
            self.say.disk_eased(None if r.level == Level.OK else r.level.name.lower(), facts)
            return False
        # every level crossed, in order; a halt stops the walk (any() short-circuits)
        crossed = range(old + 1, r.level + 1)
        return any(self._crossed(Level(level), r, facts) for level in crossed)

    def _crossed(self, level: Level, r: Reading, facts: dict[str, int]) -> bool:
        """Event and action of one level crossed downwards; True for ``halt``."""
        action = action_for(level, self.cfg)
        name, text = {
            Level.LOW: (ev.DISK_SPACE_LEFT, f"below space_left ({self.cfg.space_left})"),
            Level.ADMIN: (
                ev.DISK_ADMIN_SPACE_LEFT,
                f"below admin_space_left ({self.cfg.admin_space_left})",
            ),
            Level.FULL: (ev.DISK_FULL, "the archive's file system is full"),
        }[level]
        self.say.disk_level(name, text, action, facts)
        if action == "suspend" and not self.suspended:
            self.suspended = True
            self.loop.suspended.set()
            self.say.disk_action(
                "suspended reading: sources wait (file and journald lose nothing) until "
                "space is back above admin_space_left",
                "suspend",
            )
        elif action == "halt":
            self.halted = f"{name}: {text}"
            self.say.disk_action(f"halting: {text}", "halt")
            return True
        elif action == "exec":
            self._exec(level, r)
        elif action == "rotate":
            self.loop.request_retention(need_free=r.space_left)
        return False

    def _exec(self, level: Level, r: Reading) -> None:
        assert self.cfg.exec is not None
        argv = list(self.cfg.exec)
        try:
            child = self.runner.start(
                argv,
                {
                    "AUDITD_PY_DISK_LEVEL": level.name.lower(),
                    "AUDITD_PY_DISK_FREE": str(r.free),
                    "AUDITD_PY_DISK_TOTAL": str(r.total),
                    "AUDITD_PY_ARCHIVE": str(self.archive),
                },
            )
        except OSError as exc:
            self.say.error(f"disk action command {argv[0]} failed to start: {exc}")
        else:
            self.say.disk_action(
                f"ran {argv[0]} (pid {child.pid})", "exec", argv=argv, pid=child.pid
            )
