"""Finding the files to read and where to start each: the tailer's first half.

:class:`Scanner` lists the globs, claims and opens new files, and decides each
one's start: its sealed position (:mod:`.resume`), a copy of a file read
before (:mod:`.copies`), its end (``read_from: end`` at the first scan) or 0.
:class:`~.tailer.FileTailer` adds the reading loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import Any

from auditd_py import events as ev
from auditd_py.clock import Clock
from auditd_py.config import FileSource
from auditd_py.contracts import Meta, Sink
from auditd_py.record import pos_key
from auditd_py.sources.file import budget, discovery
from auditd_py.sources.file.copies import Copies
from auditd_py.sources.file.discovery import Ident
from auditd_py.sources.file.fingerprint import fingerprint
from auditd_py.sources.file.origins import Origins
from auditd_py.sources.file.peers import Peers
from auditd_py.sources.file.resume import Resume
from auditd_py.sources.file.rotation import RETRY, WAIT
from auditd_py.sources.file.tracked import RELEASED, Descriptors, Tracked


class Scanner:
    """The files of a ``type: file`` source, and where each is read from."""

    def __init__(self, settings: FileSource, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self._files: dict[Ident, Tracked] = {}
        self._fds = Descriptors()
        self._deferred: list[tuple[str, os.stat_result]] = []
        """New files the last scan found with the descriptor budget spent."""
        self._deferred_as: tuple[Peers | None, bool] = (None, False)
        self._origins = Origins()
        self._resume = Resume(self.name, settings.fingerprint_bytes, self._origins)
        self._copies = Copies(self._files, self._origins, settings.fingerprint_bytes)
        self._doubts: list[Tracked] = []
        self._noted: set[tuple[str, str]] = set()
        self._sink: Sink | None = None
        self._meta: Meta | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._first_scan = True
        self.rotate_wait = max(1.0, 2 * settings.poll_interval / 1e9)
        self.error: str = ""
        self.lines = 0

    # ------------------------------------------------------------ discovery

    def _paths(self) -> list[str]:
        s = self.settings
        return discovery.list_paths(s.paths, s.exclude, s.follow_symlinks)

    def _scan(self) -> None:
        first = self._first_scan
        self._first_scan = False
        found: list[tuple[str, os.stat_result]] = []
        for path in self._paths():
            with contextlib.suppress(OSError):
                found.append((path, os.stat(path)))
        # Files with a sealed position first: whether theirs still fits (or they were
        # truncated while we were stopped) decides where a copy of them starts.
        found.sort(key=lambda f: (f[1].st_dev, f[1].st_ino) not in self._resume)
        self._deferred = []
        self._open_new(found, first)
        # Only now: another file of this scan may have turned out to be the copy.
        doubts, self._doubts = self._doubts, []
        for t in doubts:
            self._doubted(t)

    def _open_new(
        self,
        found: list[tuple[str, os.stat_result]],
        first: bool = False,
        peers: Peers | None = None,
    ) -> None:
        """Open the new files of ``found`` within the descriptor budget; defer the rest.

        ``peers`` is gathered at the first new file, once per scan; the deferred
        files are opened later against the same peers, as if opened by this scan
        (comparing each with every file read meanwhile would be quadratic).
        """
        files, limit, full = self._files.values(), self.settings.max_open_files, False
        for path, st in found:
            if not stat.S_ISREG(st.st_mode):
                self._note(
                    "notfile", path, ev.FILE_UNREADABLE, f"{path} is not a regular file", path=path
                )
                continue
            ident = (st.st_dev, st.st_ino)
            t = self._files.get(ident)
            if t is not None:
                # Renamed within the globs: still the same file, not rotated away (nor a
                # file the near search at start found where a racing listing missed it).
                t.path = path
                t.rotated_at = None
                continue
            if full or (self._fds.open >= limit and not budget.make_room(files, self._fds, limit)):
                full = True  # the budget is spent on files still being read: after them
                peers = peers if peers is not None else Peers(self._files.values())
                self._deferred.append((path, st))
                self._deferred_as = (peers, first)
                continue
            if peers is None:
                peers = Peers(self._files.values())
            t = self._open(path, st, at_end=first and self.settings.read_from == "end", peers=peers)
            if t is not None:
                peers.add(t)

    def open_deferred(self) -> list[Tracked]:
        """Open what the budget allows of the files the last scan deferred (once those
        opened before were read to their end); the new ones."""
        found, self._deferred = self._deferred, []
        before = set(self._files)
        peers, first = self._deferred_as
        self._open_new(found, first, peers)
        doubts, self._doubts = self._doubts, []
        for t in doubts:
            self._doubted(t)
        return [t for k, t in self._files.items() if k not in before]

    def _find_rotated_while_stopped(self) -> None:
        """Sealed positions whose file was renamed away from the globs while we were down."""
        near: list[str] | None = None
        for ident in self._resume:
            if ident in self._files:
                continue
            if near is None:
                near = discovery.near(self.settings.paths)
            for path in near:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == ident and stat.S_ISREG(st.st_mode):
                    t = self._open(path, st, at_end=False)
                    if t is not None:
                        t.rotated_at = time.monotonic()
                    break
            else:
                if ident not in discovery.idents_of(self._paths()):
                    self._forget_gone(ident)

    def _forget_gone(self, ident: Ident) -> None:
        """A sealed position whose file is gone (deleted while we were stopped)."""
        pos = self._resume.forget(ident).pos
        if self._meta is not None:
            self._meta.event(
                ev.FILE_RELEASED,
                f"forgetting the position of a file that is gone (offset {pos.off})",
                source=self.name,
                offset=pos.off,
                forget=pos.k,
            )

    def _path_under_globs(self, ident: Ident) -> str | None:
        return discovery.path_of(ident, self._paths())

    def _claim(self, ident: Ident, path: str) -> bool:
        owner = discovery.claim(ident, self.name)
        if owner != self.name:
            self._note(
                "dup",
                path,
                ev.FILE_DUPLICATE,
                f"{path} is already read by source {owner!r}; not reading it twice",
                other_source=owner,
            )
            return False
        return True

    # ------------------------------------------------------------ opening

    def _open(
        self, path: str, st: os.stat_result, *, at_end: bool, peers: Peers | None = None
    ) -> Tracked | None:
        ident = (st.st_dev, st.st_ino)
        if not self._claim(ident, path):
            return None
        fd = self._open_fd(path, ident)
        if fd is None:
            return None
        st = os.fstat(fd)
        fpn = min(self.settings.fingerprint_bytes, st.st_size)
        head = os.pread(fd, fpn, 0)
        fpn = len(head)
        fp = fingerprint(head)
        key = pos_key(self.name, st.st_dev, st.st_ino)
        t = Tracked(key, path, st.st_dev, st.st_ino, fd, 0, fp, fpn, head=head, fds=self._fds)
        self._fds.open += 1
        self._files[ident] = t
        start, how = self._start_offset(t, st, at_end, peers)
        t.off = start
        meta = self._meta
        if meta is not None:
            name = ev.FILE_RESUMED if how == "resumed" else ev.FILE_OPENED
            meta.event(
                name,
                f"{how} {path} at offset {start}",
                source=self.name,
                path=path,
                dev=t.dev,
                ino=t.ino,
                offset=start,
                how=how,
                **({} if t.pending or not start else {"pos": t.position_with_tail()}),
            )
        if not t.pending and t.doubt is not None:
            self._doubts.append(t)  # meta-logged at the end of the scan
        return t

    def _open_fd(self, path: str, ident: Ident) -> int | None:
        """A descriptor of ``path``, if it is still the file ``ident`` (claimed)."""
        try:
            # O_NONBLOCK: a FIFO swapped in since the stat must not block the open
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            discovery.unclaim(ident, self.name)
            self._note(
                "open",
                f"{path}:{exc.errno}",
                ev.FILE_UNREADABLE,
                f"cannot open {path}: {exc.strerror} (retrying)",
                path=path,
                errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            )
            return None
        self._noted.discard(("open", f"{path}:{errno.EACCES}"))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device since the stat
            os.close(fd)
            discovery.unclaim(ident, self.name)
            self._note(
                "notfile", path, ev.FILE_UNREADABLE, f"{path} is not a regular file", path=path
            )
            return None
        if (st.st_dev, st.st_ino) != ident:
            # Renamed between the stat and the open (logrotate shifting a.log.1 to
            # a.log.2 and creating a.log.1 meanwhile): this descriptor is another file
            # than the one the identity names, and its positions would describe that
            # other file. The next scan finds both where they are now.
            os.close(fd)
            discovery.unclaim(ident, self.name)
            return None
        return fd

    def _start_offset(
        self, t: Tracked, st: os.stat_result, at_end: bool, peers: Peers | None
    ) -> tuple[int, str]:
        sealed = self._resume.pop(t.ident)
        if sealed is not None:
            off = sealed.pos.off
            if self._resume.fits(t, sealed, st.st_size):
                # Its file is here, unchanged: the position no longer stands for a copy
                # made while we were stopped (it would match this file's next copy).
                self._origins.drop(sealed.pos.k)
                return off, "resumed"
            self._resume.keep_for_copy(t, sealed)
            if self._meta is not None:
                self._meta.event(
                    ev.FILE_POSITION_INVALID,
                    f"{t.path}: sealed position {off} does not fit this file (inode reused, "
                    "or rewritten while stopped); reading it from the start",
                    source=self.name,
                    path=t.path,
                    offset=off,
                    size=st.st_size,
                )
            return 0, "reread"
        copy = self._copies.copy_origin(t, st.st_size, peers)
        if copy in (WAIT, RETRY):
            t.pending = True
            t.seen_size = st.st_size
            return 0, "deferred"
        if copy is not None:
            return copy, "copy"
        if at_end:
            return st.st_size, "at_end"
        return 0, "new"

    def _doubted(self, t: Tracked) -> None:
        """Meta-log a file read from 0 that may be a copy of sealed lines (see copies)."""
        org, t.doubt = t.doubt, None
        if org is None or t.off or self._meta is None or org not in self._origins:
            return  # (no longer in _origins: another file was its copy)
        n, lines = self._copies.copied_lines(t, org)
        self._meta.event(
            ev.FILE_DUPLICATE,
            f"{t.path} starts like the sealed part of a file read before ({org.key}), but "
            f"cannot be told to be its copy; reading it from the start: up to {lines} lines "
            f"({n} bytes) may be sealed twice",
            source=self.name,
            path=t.path,
            reason="unverifiable_copy",
            of=org.key,
            sealed_offset=org.off,
            bytes=n,
            lines=lines,
        )

    def _close(self, t: Tracked) -> None:
        if t.handle >= 0:
            with contextlib.suppress(OSError):
                os.close(t.handle)
            self._fds.open -= 1
        t.handle = RELEASED
        self._files.pop(t.ident, None)
        discovery.unclaim(t.ident, self.name)

    def _note(self, kind: str, what: str, event: str, message: str, **fields: Any) -> None:
        """Meta-log a condition once (until it clears), not on every poll."""
        if (kind, what) in self._noted:
            return
        self._noted.add((kind, what))
        if self._meta is not None:
            self._meta.event(event, message, source=self.name, **fields)
