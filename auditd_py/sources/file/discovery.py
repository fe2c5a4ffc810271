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


def list_paths(
    patterns: Iterable[str], exclude: Iterable[str], follow_symlinks: bool = False
) -> list[str]:
    """The files the globs match, minus the excluded ones.

    A match reached through a symlinked directory below the pattern's fixed
    part (:func:`static_dir`) is left out, unless ``follow_symlinks``; even then
    one whose directory resolves outside that fixed part (the configured root)
    is left out: a link cannot bring files from elsewhere into the archive.
    """
    found: set[str] = set()
    for pattern in patterns:
        root = static_dir(pattern)
        inside = _Inside(root, follow_symlinks)
        found.update(p for p in glob.glob(pattern, recursive=True) if inside(p))
    for pattern in exclude:
        found.difference_update(glob.glob(pattern, recursive=True))
    return sorted(found)


class _Inside:
    """Whether a path found under ``root`` is reached without leaving it (see list_paths)."""

    def __init__(self, root: str, follow_symlinks: bool) -> None:
        self.root = root
        self.follow = follow_symlinks
        self.real_root = os.path.realpath(root)
        self._dirs: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        d = os.path.dirname(path) or "."
        ok = self._dirs.get(d)
        if ok is None:
            ok = self._dirs[d] = self._dir_ok(d)
        return ok

    def _dir_ok(self, d: str) -> bool:
        rel = os.path.relpath(d, self.root)
        if rel == ".":
            return True
        if rel.startswith(".." + os.sep) or rel == "..":
            return False
        cur = self.root
        for part in rel.split(os.sep):
            cur = os.path.join(cur, part)
            if os.path.islink(cur) and not self.follow:
                return False
        real = os.path.realpath(d)
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)


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
