"""Which files a source reads: globs and excludes, the directories rotation
renames into, directory watching, and the process-wide claims (which source
reads which file, so that two sources never read the same file twice).

A file is known by its identity, ``(device, inode)``; a path is only where it
was last seen. Directory listings race with renames (logrotate shifting
``a.log.N`` to ``a.log.N+1``): callers stat what a listing returns and compare
identities, never trust a path alone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

Ident = tuple[int, int]
"""(device, inode)"""

_claims: dict[Ident, str] = {}
_claims_lock = threading.Lock()


def claim(ident: Ident, source: str) -> str:
    """Claim a file for ``source``; returns its owner (``source`` if the claim holds)."""
    with _claims_lock:
        return _claims.setdefault(ident, source)


def unclaim(ident: Ident, source: str) -> None:
    with _claims_lock:
        if _claims.get(ident) == source:
            del _claims[ident]


def list_paths(patterns: Iterable[str], exclude: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for pattern in patterns:
        found.update(glob.glob(pattern, recursive=True))
    for pattern in exclude:
        found.difference_update(glob.glob(pattern, recursive=True))
    return sorted(found)


def idents_of(paths: Iterable[str]) -> set[Ident]:
    out = set()
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            out.add((st.st_dev, st.st_ino))
    return out


def path_of(ident: Ident, paths: Iterable[str]) -> str | None:
    """The first of ``paths`` that is the file ``ident`` now."""
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == ident:
                return path
    return None


def near(patterns: Iterable[str]) -> list[str]:
    """Files in the directories the globs look in (where rotation renames to)."""
    out: list[str] = []
    for d in sorted({static_dir(p) for p in patterns}):
        with contextlib.suppress(OSError):
            out.extend(os.path.join(d, n) for n in sorted(os.listdir(d)))
    return out


def ident_of(key: str) -> Ident | None:
    """(dev, ino) from a position key ``source:dev:ino``."""
    try:
        _, dev, ino = key.rsplit(":", 2)
        return int(dev), int(ino)
    except ValueError:
        return None


def static_dir(pattern: str) -> str:
    """The deepest directory of a glob pattern that has no wildcard."""
    parts = pattern.split(os.sep)
    keep = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        keep.append(part)
    return os.sep.join(keep) or "."


def watch(patterns: list[str], wake: threading.Event, on_error: Callable[[str, str], None]) -> Any:
    """Set ``wake`` on any change in the globs' directories (inotify via watchdog).

    Returns the started observer, or None: polling alone still works.
    ``on_error(what, message)`` reports a directory that cannot be watched.
    """
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: PLC0415
        from watchdog.observers import Observer  # noqa: PLC0415
    except ImportError:  # polling alone still works
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    dirs = {static_dir(p) for p in patterns}
    obs = Observer()
    handler = Handler()
    scheduled = 0
    for d in sorted(dirs):
        if os.path.isdir(d):
            try:
                obs.schedule(handler, d, recursive="**" in "".join(patterns))
                scheduled += 1
            except OSError as exc:  # e.g. inotify watch limit: fall back to polling
                on_error(d, f"cannot watch {d}: {exc}")
    if not scheduled:
        return None
    obs.daemon = True
    try:
        obs.start()
    except OSError as exc:
        on_error("start", f"file watching unavailable: {exc}")
        return None
    return obs
