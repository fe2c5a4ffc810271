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
event and an action on each change of level, not on every check.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from auditd_py.config import DiskSettings

FULL_MARGIN = 1 << 20
"""Less than this available counts as full: the next group commit may not fit."""
EXIT_HALTED = 3
"""``auditd-py run`` exit status when a disk action halted the daemon."""


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
