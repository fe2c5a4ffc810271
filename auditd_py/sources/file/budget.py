"""The descriptor budget of a file source (``max_open_files``).

Past the budget, files read to their end are closed, least recently active
first; each is then watched by ``stat`` alone and opened again, by identity
(``(dev, ino)``), when it changes: where its path is, or where rotation renamed
it to. So 10,000 files are read with a bounded number of descriptors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from auditd_py.sources.file import discovery
from auditd_py.sources.file.tracked import RELEASED, Descriptors, Tracked


def make_room(files: Iterable[Tracked], fds: Descriptors, budget: int) -> bool:
    """Close idle files down to three quarters of ``budget``; True if one more fits."""
    quiet = []
    for t in files:
        # a held partial line must still be sealed after its timeout, at a poll
        if t.handle >= 0 and not t.pending and t.rotated_at is None and not t.partial:
            with contextlib.suppress(OSError):
                if t.size() == t.off:
                    quiet.append(t)
    quiet.sort(key=lambda t: t.last_data)
    for t in quiet[: max(0, fds.open - budget * 3 // 4)]:
        with contextlib.suppress(OSError):
            t.close_idle()
    return fds.open < budget


def awake(t: Tracked, patterns: list[str]) -> bool | None:
    """Should ``t`` be read this poll? Open: yes. Closed and unchanged: no. Closed and
    changed: opened again where it is now (yes), or None if it is gone."""
    if t.handle >= 0:
        return True
    if t.handle == RELEASED or not t.stirred():
        return False
    with contextlib.suppress(OSError):
        t.reopen(t.path)
        return True
    path = discovery.path_of(t.ident, discovery.near(patterns))
    if path is not None:  # renamed away (rotated): read to its end there
        with contextlib.suppress(OSError):
            t.reopen(path)
            return True
    return None
