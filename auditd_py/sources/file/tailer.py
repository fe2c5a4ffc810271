"""Tailing plain files: globs, rotation, truncation, restarts, never a line twice.

A file is known by its identity, ``(device, inode)``, plus a fingerprint of its
first bytes, never by its path: a path is only where the file was last seen.
Each record carries ``attrs.pos`` = ``{k, off, fp, fpn}`` (``off``: the byte
offset where the record ends; ``fp``: BLAKE2b-64 of the first ``fpn`` bytes),
so the sealed archive says exactly how far every file was read.

On start, each sealed position is matched to a file with the same identity
(under the globs, or renamed next to its last path by a rotation while we were
stopped); the fingerprint and the bytes just before the offset must match the
sealed record, or the file is a different one that reused the inode and is
read from the start. Live:

* rename + create: the old file keeps being read through its open descriptor
  until it has been idle for ``rotate_wait``, then let go; the new file is
  read from 0;
* copytruncate: a size below the offset, or first or last bytes that changed,
  mean truncation: reading restarts at 0 and the event is sealed; if the
  rotated copy matches the globs it is recognised by its fingerprint and read
  from where the original stopped, which recovers the lines written between
  our last read and the truncation (a copy shorter than that holds nothing
  new: it was taken before we read further). The copy's decision is queued
  before any line of the truncated file, and a restart treats a sealed
  position whose file was truncated the same way (see :class:`Origin`), so a
  kill -9 at any point neither loses nor repeats the copy. One case cannot be
  decided: a copy shorter than ``fingerprint_bytes`` that ends before the 32
  bytes preceding its original's sealed offset (the original was read past the
  copy's end, and the daemon killed before deciding). It is read from 0 (nothing
  is lost) and a ``file.duplicate`` event says how many lines may be repeated;
* a last line without a newline is held until completed, or sealed flagged
  ``partial`` after ``partial_line_timeout``; a line longer than
  ``max_line_bytes`` is sealed in pieces flagged ``split``, never dropped.

watchdog (inotify) wakes the tailer early; polling every ``poll_interval`` is
the fallback and the guarantee.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditd_py import events as ev
from auditd_py.clock import Clock
from auditd_py.config import FileSource
from auditd_py.contracts import Meta, Sink
from auditd_py.record import Fields, Position, pos_key

CHUNK = 1 << 18
WAIT = -1  # _copy_origin: "cannot tell yet"
RETRY = -2  # _copy_origin: an original changed while compared: decide once its truncation is seen
BATCH = 2048
_claims: dict[tuple[int, int], str] = {}
_claims_lock = threading.Lock()


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(eq=False)
class Tracked:
    key: str
    path: str
    dev: int
    ino: int
    fd: int
    off: int
    fp: str
    fpn: int
    partial: bytes = b""
    partial_since: float = 0.0
    rotated_at: float | None = None
    last_data: float = field(default_factory=time.monotonic)
    truncations: int = 0
    splitting: bool = False
    """Pieces of the current (over-long) line were sealed already: its rest is a piece too."""
    tail: bytes = b""
    """The last bytes (≤ 32) before ``off``, as read: identifies a copy of this file."""
    pending: bool = False
    """A new file that may be a copy still being written: not read until decided."""
    seen_size: int = 0
    wait_off: int = 0
    wait_tail: bytes = b""
    head: bytes = b""
    """The first ``fpn`` bytes, as fingerprinted (compared in memory, not re-read)."""
    doubt: Origin | None = None
    """Read from 0 although it starts like the sealed part of ``doubt`` (meta-logged)."""

    @property
    def ident(self) -> tuple[int, int]:
        return (self.dev, self.ino)


@dataclass(eq=False)
class Origin:
    """The read part of a file we no longer read at that offset: what a copy of it holds.

    Its first ``fpn`` bytes hash to ``fp``; ``off`` bytes of it are sealed, the last
    ones being ``tail``. ``truncated``: the file was seen truncated after that
    (copytruncate), live or at a restart (its sealed position no longer fits the
    same inode, which now holds other first bytes). Otherwise the file is gone or
    rewritten (a restart's sealed position, as before).
    """

    key: str
    fp: str
    fpn: int
    off: int
    tail: bytes
    truncated: bool
    polls: int = 0


class FileTailer:
    """A ``type: file`` source."""

    def __init__(self, settings: FileSource, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self._files: dict[tuple[int, int], Tracked] = {}
        self._resume: dict[tuple[int, int], Position] = {}
        self._origins: list[Origin] = []
        self._sealed_fps: dict[tuple[str, int], int] = {}
        self._doubts: list[Tracked] = []
        self._noted: set[tuple[str, str]] = set()
        self._sink: Sink | None = None
        self._meta: Meta | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._first_scan = True
        self.rotate_wait = max(1.0, 2 * settings.poll_interval / 1e9)
        self.error: str = ""
        self.lines = 0

    # ------------------------------------------------------------ lifecycle

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        self._sink, self._meta = sink, meta
        prefix = self.name + ":"
        for k, p in positions.items():
            if not k.startswith(prefix):
                continue
            ident = _ident_of(k)
            if ident is None:
                continue
            dev, ino = ident
            self._resume[(dev, ino)] = p
            fps = (str(p.pos.get("fp")), int(p.pos.get("fpn", 0)))
            self._sealed_fps[fps] = self._sealed_fps.get(fps, 0) + 1
            off = int(p.pos.get("off", 0))
            if off and int(p.pos.get("fpn", 0)) >= self.settings.fingerprint_bytes:
                # Its copy, should its file be gone (dropped again if the file is found).
                tail = _tail_of(p)[-off:]
                self._origins.append(
                    Origin(k, str(p.pos.get("fp")), int(p.pos["fpn"]), off, tail, False)
                )
        with self._lock:
            self._scan()
            self._find_rotated_while_stopped()
        self._watch()
        self._thread = threading.Thread(target=self._loop, name=f"file:{self.name}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: PLC0415
            from watchdog.observers import Observer  # noqa: PLC0415
        except ImportError:  # polling alone still works
            return
        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        dirs = {_static_dir(p) for p in self.settings.paths}
        obs = Observer()
        handler = Handler()
        scheduled = 0
        for d in sorted(dirs):
            if os.path.isdir(d):
                try:
                    obs.schedule(handler, d, recursive="**" in "".join(self.settings.paths))
                    scheduled += 1
                except OSError as exc:  # e.g. inotify watch limit: fall back to polling
                    self._note("watch", d, ev.SOURCE_ERROR, f"cannot watch {d}: {exc}")
        if scheduled:
            obs.daemon = True
            try:
                obs.start()
            except OSError as exc:
                self._note("watch", "start", ev.SOURCE_ERROR, f"file watching unavailable: {exc}")
                return
            self._observer = obs

    def _loop(self) -> None:
        interval = self.settings.poll_interval / 1e9
        while not self._stop.is_set():
            try:
                with self._lock:
                    busy = self._poll()
            except _Stopped:
                return
            except Exception as exc:  # a bug or I/O error must not kill tailing silently
                self.error = f"{type(exc).__name__}: {exc}"
                self._note("loop", self.error, ev.SOURCE_ERROR, f"file source error: {self.error}")
                busy = False
            if not busy:
                self._wake.wait(interval)
                self._wake.clear()

    def drain(self) -> None:
        """Read every file to its current end (a trailing partial line included)."""
        with self._lock:
            self._scan()
            while self._poll():
                pass
            for t in list(self._files.values()):
                if t.partial:
                    self._emit_partial(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for t in list(self._files.values()):
                self._close(t)

    def healthy(self) -> tuple[bool, str]:
        alive = self._thread is not None and self._thread.is_alive()
        if not alive and not self._stop.is_set():
            return False, "file tailer thread is not running"
        return (not self.error, self.error)

    def stats(self) -> dict[str, int]:
        # No lock: a scrape must never wait for the tailer (len() of a dict is atomic).
        return {"files": len(self._files), "lines": self.lines}

    # ------------------------------------------------------------ discovery

    def _paths(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.settings.paths:
            found.update(glob.glob(pattern, recursive=True))
        for pattern in self.settings.exclude:
            found.difference_update(glob.glob(pattern, recursive=True))
        return sorted(found)

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
            self._open(path, st, at_end=first and self.settings.read_from == "end")
        # Only now: another file of this scan may have turned out to be the copy.
        doubts, self._doubts = self._doubts, []
        for t in doubts:
            self._doubted(t)

    def _find_rotated_while_stopped(self) -> None:
        """Sealed positions whose file was renamed away from the globs while we were down."""
        near: list[str] | None = None
        for ident in list(self._resume):
            if ident in self._files:
                continue
            if near is None:
                near = self._near()
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
                if ident not in self._idents_under_globs():
                    self._forget_gone(ident)

    def _idents_under_globs(self) -> set[tuple[int, int]]:
        out = set()
        for path in self._paths():
            with contextlib.suppress(OSError):
                st = os.stat(path)
                out.add((st.st_dev, st.st_ino))
        return out

    def _forget_gone(self, ident: tuple[int, int]) -> None:
        """A sealed position whose file is gone (deleted while we were stopped)."""
        p = self._resume.pop(ident)
        self._drop_origins(str(p.pos.get("k")))
        if self._meta is not None:
            self._meta.event(
                ev.FILE_RELEASED,
                f"forgetting the position of a file that is gone (offset {p.pos.get('off')})",
                source=self.name,
                offset=p.pos.get("off"),
                forget=str(p.pos.get("k")),
            )

    def _near(self) -> list[str]:
        """Files in the directories the globs look in (where rotation renames to)."""
        out: list[str] = []
        for d in sorted({_static_dir(p) for p in self.settings.paths}):
            with contextlib.suppress(OSError):
                out.extend(os.path.join(d, n) for n in sorted(os.listdir(d)))
        return out

    def _claim(self, ident: tuple[int, int], path: str) -> bool:
        with _claims_lock:
            owner = _claims.setdefault(ident, self.name)
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

    def _unclaim(self, ident: tuple[int, int]) -> None:
        with _claims_lock:
            if _claims.get(ident) == self.name:
                del _claims[ident]

    def _open(self, path: str, st: os.stat_result, *, at_end: bool) -> Tracked | None:
        ident = (st.st_dev, st.st_ino)
        if not self._claim(ident, path):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            self._unclaim(ident)
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
        if (st.st_dev, st.st_ino) != ident:
            # Renamed between the stat and the open (logrotate shifting a.log.1 to
            # a.log.2 and creating a.log.1 meanwhile): this descriptor is another file
            # than the one the identity names, and its positions would describe that
            # other file. The next scan finds both where they are now.
            os.close(fd)
            self._unclaim(ident)
            return None
        fpn = min(self.settings.fingerprint_bytes, st.st_size)
        head = os.pread(fd, fpn, 0)
        fpn = len(head)
        fp = fingerprint(head)
        key = pos_key(self.name, st.st_dev, st.st_ino)
        t = Tracked(key, path, st.st_dev, st.st_ino, fd, 0, fp, fpn, head=head)
        self._files[ident] = t
        start, how = self._start_offset(t, st, at_end)
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
                **({} if t.pending or not start else {"pos": self._pos_of(t)}),
            )
        if not t.pending and t.doubt is not None:
            self._doubts.append(t)  # meta-logged at the end of the scan
        return t

    def _pos_of(self, t: Tracked) -> dict[str, Any]:
        """The position of ``t`` as a meta record carries it (with its exact tail).

        Sealing it when a file is opened matters for a copy opened at an offset:
        if nothing new is ever read from it, this is the only sealed trace that
        its first ``off`` bytes are done. A file opened at 0 carries none: the
        position it would replace may still be needed (a file truncated while we
        were stopped: its sealed offset says where its copy starts).
        """
        return {"k": t.key, "off": t.off, "fp": t.fp, "fpn": t.fpn, "tail": t.tail.hex()}

    def _start_offset(self, t: Tracked, st: os.stat_result, at_end: bool) -> tuple[int, str]:
        p = self._resume.pop(t.ident, None)
        if p is not None:
            off = int(p.pos.get("off", 0))
            key = str(p.pos.get("k"))
            if self._matches(t, p, st.st_size):
                # Its file is here, unchanged: the position no longer stands for a copy
                # made while we were stopped (it would match this file's next copy).
                self._drop_origins(key)
                return off, "resumed"
            self._truncated_while_stopped(t, p, key)
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
        copy = self._copy_origin(t, st.st_size)
        if copy in (WAIT, RETRY):
            t.pending = True
            t.seen_size = st.st_size
            return 0, "deferred"
        if copy is not None:
            return copy, "copy"
        if at_end:
            return st.st_size, "at_end"
        return 0, "new"

    def _matches(self, t: Tracked, p: Position, size: int) -> bool:
        """Is ``t`` the file the sealed position ``p`` was taken in?"""
        off = int(p.pos.get("off", 0))
        fpn = int(p.pos.get("fpn", 0))
        if size < off or size < fpn:
            return False
        if fingerprint(os.pread(t.fd, fpn, 0)) != p.pos.get("fp"):
            return False
        tail = _tail_of(p)[-off:] if off else b""
        if os.pread(t.fd, len(tail), off - len(tail)) != tail:
            return False
        t.tail = tail
        return True

    def _truncated_while_stopped(self, t: Tracked, p: Position, key: str) -> None:
        """A sealed position that no longer fits its own file: keep it for the copy.

        With copytruncate, the daemon may have read the original past the point
        logrotate copied it at (the lines written between the copy and the
        truncate), and been killed before its decision about the copy was sealed.
        The copy is then shorter than the sealed offset, and everything in it is
        sealed already: recognised by its fingerprint, it holds nothing new.

        That reasoning needs the original to have been truncated, which is what
        copytruncate does and what we check: the same inode, now shorter than the
        sealed offset or holding other bytes before it, and not starting with the
        fingerprinted bytes again (an inode reused by a new file written the same
        way, or a file rewritten in place, would; then a shorter file that starts
        like it is read from the start, as before). A file too short to tell
        (e.g. empty right after the truncation) counts as truncated. If another
        sealed position has the same fingerprint, that is the copy, decided and
        sealed before the kill: nothing is left to match.
        """
        off, fpn, fp = int(p.pos.get("off", 0)), int(p.pos.get("fpn", 0)), str(p.pos.get("fp"))
        self._drop_origins(key)
        if not off or not fpn:
            return
        if self._sealed_fps.get((fp, fpn), 0) > 1:
            return  # its copy was decided before the kill: it has a sealed position itself
        size = os.fstat(t.fd).st_size
        rewritten = size >= fpn and fingerprint(os.pread(t.fd, fpn, 0)) == fp
        if rewritten and fpn < self.settings.fingerprint_bytes:
            return  # a short fingerprint alone proves too little (see _copy_origin)
        self._origins.append(Origin(key, fp, fpn, off, _tail_of(p)[-off:], not rewritten))

    def _drop_origins(self, key: str) -> None:
        self._origins = [o for o in self._origins if o.key != key]

    def _copy_origin(self, t: Tracked, size: int) -> int | None:
        """A new file that is a copy of one already read (copytruncate's rotated copy).

        It starts with the same bytes (fingerprint) and has the same bytes just
        before the offset we had read the original to: everything before that
        offset is sealed already, so reading starts there. This also recovers the
        lines written between our last read of the original and its truncation.

        Returns the offset to start at, None (a new file: from 0), WAIT (cannot
        tell yet: a copy of a file we are reading, or one being written) or RETRY
        (a file it was compared with changed meanwhile: decide after its
        truncation is seen, never on a comparison it spoiled).
        """
        t.wait_off, t.wait_tail, t.doubt = 0, b"", None
        fb = self.settings.fingerprint_bytes
        others = [o for o in self._files.values() if o is not t and not o.pending]
        head = os.pread(t.fd, min(size, fb), 0)
        heads: dict[int, str] = {}
        compared: list[Tracked] = []  # files whose bytes were read to compare: see 3.

        def starts_like(fp: str, fpn: int) -> bool:
            """Do the first ``fpn`` bytes of ``t`` hash to ``fp``?"""
            if not 0 < fpn <= len(head):
                return False
            if fpn not in heads:
                heads[fpn] = fingerprint(head[:fpn])
            return heads[fpn] == fp

        # 0. It starts like a file we have not read anything of yet (opened by the same
        #    scan, say at a start while logrotate is copying it): the copy's bytes would
        #    be read there too. Decide once that one is read.
        if head and any(not o.off and not o.partial and o.head.startswith(head) for o in others):
            return WAIT
        # 1. A copy of a file we are reading (being made, or made and not truncated yet).
        live = [o for o in others if o.off]
        if t.fpn < fb:
            # Too short to tell yet: if it starts like a file we read (or is still
            # empty), it may be a copy in progress; wait for it to grow, or to stay.
            for o in live:
                got = os.pread(o.fd, len(head), 0)
                if got == head:
                    return WAIT
                if len(got) < len(head):  # shorter than what we read: truncated meanwhile?
                    compared.append(o)
        else:
            for o in sorted(live, key=lambda o: o.off, reverse=True):
                if not starts_like(o.fp, o.fpn):
                    continue
                if o.off > size:
                    # Not yet as long: a copy being written is a prefix of a file we are
                    # reading (logrotate truncates only after copying); anything else is new.
                    if _same_end(o.fd, t.fd, size):
                        # all of it was read from the original already, should it stay so
                        t.wait_off = size
                        t.wait_tail = os.pread(t.fd, min(32, size), size - min(32, size))
                        return WAIT
                    compared.append(o)
                    continue
                tail = o.tail[-o.off :]
                if os.pread(t.fd, len(tail), o.off - len(tail)) == tail:
                    # A copy of a file we are still reading: the bytes after `off` are
                    # in both. Wait until the original is truncated (then its offset at
                    # that moment is where the copy starts, via an Origin), or, for a
                    # plain copy, until the wait is over (t.wait_off).
                    t.wait_off = o.off
                    t.wait_tail = tail
                    return WAIT
        # 2. A copy of the read part of a file truncated since (live, or while we were
        #    stopped), or of a file gone while we were stopped.
        unsure: Origin | None = None
        for org in sorted(self._origins, key=lambda o: o.off, reverse=True):
            tail = org.tail[-org.off :]
            if not starts_like(org.fp, org.fpn):
                if org.truncated and 0 < size < org.fpn:
                    # Too short to compare with its fingerprint: the bytes before its
                    # sealed offset are all there is to go by.
                    at = org.off - len(tail)
                    if size >= org.off:
                        if os.pread(t.fd, len(tail), at) == tail:
                            self._origins.remove(org)
                            t.tail = tail
                            return org.off
                    elif size <= at or os.pread(t.fd, size - at, at) == tail[: size - at]:
                        unsure = unsure or org  # ends before them: cannot tell
                continue
            if org.off > size:
                if org.truncated:
                    # Copied before we read the original further (it kept growing
                    # until its truncation): all of it is sealed already.
                    self._origins.remove(org)
                    t.tail = os.pread(t.fd, min(32, size), size - min(32, size))
                    return size
                t.doubt = org  # the file is gone: nothing says this is its copy
                continue
            if os.pread(t.fd, len(tail), org.off - len(tail)) == tail:
                self._origins.remove(org)
                t.tail = tail
                return org.off
        # 3. Nothing matched: make sure it is not because a file we compared with was
        #    truncated in the middle of the comparison (logrotate runs beside us).
        if any(self._changed(o) for o in compared):
            return RETRY
        if unsure is not None:
            # Not a prefix of any file now (0., 1.): a finished copy (logrotate copies
            # before it truncates) or a new file. A copy shorter than the fingerprint
            # of a file we read past its end cannot be told from a new file: read from
            # 0 (nothing lost) and meta-logged, decided now so that the event is sealed
            # before anything read from the truncated file.
            t.doubt = unsure
        return None

    def _doubted(self, t: Tracked) -> None:
        """Meta-log a file read from 0 that may be a copy of sealed lines (see _copy_origin)."""
        org, t.doubt = t.doubt, None
        if org is None or t.off or self._meta is None or org not in self._origins:
            return  # (no longer in _origins: another file was its copy)
        size = os.fstat(t.fd).st_size
        n = min(size, org.off)
        lines = 0
        for at in range(0, n, CHUNK):
            lines += os.pread(t.fd, min(CHUNK, n - at), at).count(b"\n")
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

    def _changed(self, t: Tracked) -> bool:
        """Was ``t`` truncated or rewritten since we read it (its bytes no longer fit)?"""
        size = os.fstat(t.fd).st_size
        if size < t.off + len(t.partial):
            return True
        if t.fpn and os.pread(t.fd, t.fpn, 0) != t.head:
            return True
        return bool(t.tail) and os.pread(t.fd, len(t.tail), t.off - len(t.tail)) != t.tail

    def _recheck(self, t: Tracked) -> bool:
        """Handle a truncation of ``t`` not seen yet; True if there was one."""
        if not self._changed(t):
            return False
        size = os.fstat(t.fd).st_size
        if t.off or t.partial:
            self._truncated(t, size)
        else:  # nothing read yet: only the fingerprint of what is there to read changes
            self._fingerprint(t, size)
        return True

    def _fingerprint(self, t: Tracked, size: int) -> None:
        head = os.pread(t.fd, min(self.settings.fingerprint_bytes, size), 0)
        t.head, t.fp, t.fpn = head, fingerprint(head), len(head)

    # ------------------------------------------------------------ reading

    def _poll(self) -> bool:
        """One pass over every file; True if any data was read."""
        for t in list(self._files.values()):
            # Truncations first: a copy found by the scan starts where its original,
            # truncated since our last read, was read to (see _truncated).
            if not t.pending:
                with contextlib.suppress(OSError):  # reported by _read
                    self._recheck(t)
        self._scan()
        busy = False
        now = time.monotonic()
        for t in list(self._files.values()):
            try:
                busy |= self._read(t, now)
                self._check_rotation(t, now)
            except OSError as exc:
                self._note("read", t.path, ev.SOURCE_ERROR, f"reading {t.path}: {exc.strerror}")
        self._age_origins()
        return busy

    def _age_origins(self) -> None:
        """Forget origins no copy claimed.

        A copy exists before its original is truncated, so it is found by the scan
        that follows the truncation (or at start), or it is pending already and
        decided by the next poll. Kept two polls, and while any file is pending;
        else a file that appears much later could be taken for a copy.
        """
        for o in self._origins:
            o.polls += 1
        if not any(t.pending for t in self._files.values()):
            self._origins = [o for o in self._origins if o.polls < 2]

    def _check_rotation(self, t: Tracked, now: float) -> None:
        if t.rotated_at is None:
            try:
                st = os.stat(t.path)
                moved = (st.st_dev, st.st_ino) != t.ident
            except FileNotFoundError:
                moved = True
            if moved:
                t.rotated_at = now
                if self._meta is not None:
                    self._meta.event(
                        ev.FILE_ROTATED,
                        f"{t.path} was renamed or removed; reading the old file to its end",
                        source=self.name,
                        path=t.path,
                        dev=t.dev,
                        ino=t.ino,
                        offset=t.off,
                    )
                self._scan()  # pick up the new file at that path right away
        elif now - t.last_data >= self.rotate_wait and now - t.rotated_at >= self.rotate_wait:
            path = self._path_under_globs(t.ident)
            if path is not None:
                # A directory listing raced with renames (logrotate shifting a.log.N to
                # a.log.N+1): the file is still where the globs look. Releasing it would
                # forget its position, and the next scan would read it again from 0.
                t.path, t.rotated_at = path, None
                return
            if t.partial:
                self._emit_partial(t)
            self._release(t)

    def _path_under_globs(self, ident: tuple[int, int]) -> str | None:
        for path in self._paths():
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == ident:
                    return path
        return None

    def _decide(self, t: Tracked, size: int, now: float) -> bool:
        """A deferred file: is it a copy of one we read? True once decided."""
        if size > t.fpn and t.fpn < self.settings.fingerprint_bytes:
            self._fingerprint(t, size)
        if size != t.seen_size:
            t.seen_size, t.last_data = size, now
        for o in list(self._files.values()):
            # An original truncated since its last read must be seen as such before
            # deciding: its offset at truncation is where its copy starts.
            if o is not t and not o.pending:
                self._recheck(o)
        if not t.pending:  # decided meanwhile: a truncation decides pending copies at once
            return True
        got = self._copy_origin(t, size)
        if got == RETRY or (got == WAIT and now - t.last_data < self.rotate_wait):
            return False
        t.pending = False
        if got == WAIT and t.wait_off:  # a copy of a file that was not truncated
            got, t.tail = t.wait_off, t.wait_tail
        t.off = got if got is not None and got != WAIT else 0
        if self._meta is not None:
            self._meta.event(
                ev.FILE_OPENED,
                f"{'copy' if t.off else 'new'} {t.path} at offset {t.off}",
                source=self.name,
                path=t.path,
                offset=t.off,
                how="copy" if t.off else "new",
                **({"pos": self._pos_of(t)} if t.off else {}),
            )
        self._doubted(t)
        return True

    def _read(self, t: Tracked, now: float) -> bool:
        size = os.fstat(t.fd).st_size
        if t.pending and not self._decide(t, size, now):
            return False
        if self._recheck(t):  # shrank, or rewritten from the start and already longer again
            size = os.fstat(t.fd).st_size
        pos = t.off + len(t.partial)
        if t.fpn < self.settings.fingerprint_bytes and size > t.fpn:
            self._fingerprint(t, size)
        got = False
        batch: list[Fields] = []
        while pos < size and not self._stop.is_set():
            chunk = os.pread(t.fd, min(CHUNK, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            got = True
            self._split(t, t.partial + chunk if t.partial else chunk, batch)
            if len(batch) >= BATCH:
                self._deliver(batch)
                batch = []
        if got:
            t.last_data = now
            if t.partial and not t.partial_since:
                t.partial_since = now
        elif t.partial and now - t.partial_since >= self.settings.partial_line_timeout / 1e9:
            self._emit_partial(t, batch)
        self._deliver(batch)
        return got

    def _split(self, t: Tracked, data: bytes, batch: list[Fields]) -> None:
        maxlen = self.settings.max_line_bytes
        lines = data.split(b"\n")
        rest = lines.pop()
        off = t.off
        now = self.clock.now_ns()
        name, path, key, fp, fpn = self.name, t.path, t.key, t.fp, t.fpn
        append = batch.append
        # attrs as JSON from a per-file template: the same bytes orjson would write for
        # {"path": path, "pos": {"k": key, "off": off, "fp": fp, "fpn": fpn}}, but
        # without building two dicts per line. The position dict rides on the last one.
        head = b'{"path":' + orjson.dumps(path) + b',"pos":{"k":' + orjson.dumps(key) + b',"off":'
        tail = b',"fp":"%s","fpn":%d}}' % (fp.encode(), fpn)
        for line in lines:
            if not t.splitting and len(line) <= maxlen:
                off += len(line) + 1
                append(Fields(now, name, line, None, None, head + b"%d" % off + tail))
                continue
            if len(line) > maxlen:
                t.splitting = False
                for piece, end, last in _pieces(line, maxlen, off):
                    pos = {"k": key, "off": end, "fp": fp, "fpn": fpn}
                    if not last:
                        pos["cut"] = 1
                    append(Fields(now, name, piece, None, {"path": path, "split": 1, "pos": pos}))
                off += len(line) + 1
                continue
            off += len(line) + 1
            pos = {"k": key, "off": off, "fp": fp, "fpn": fpn}
            attrs: dict[str, Any] = {"path": path, "pos": pos}
            if t.splitting:
                attrs["split"] = 1
            t.splitting = False
            append(Fields(now, name, line, None, attrs))
        self.lines += len(lines)
        if batch and batch[-1].raw_attrs is not None and batch[-1].pos is None:
            batch[-1].pos = {"k": key, "off": off, "fp": fp, "fpn": fpn}
        if lines:
            end = len(data) - len(rest)
            t.tail = data[end - 32 : end] if end >= 32 else (t.tail + data[:end])[-32:]
        t.off = off
        while len(rest) > maxlen:  # a line longer than the limit with no newline yet
            piece, rest = rest[:maxlen], rest[maxlen:]
            t.off += len(piece)
            t.tail = (t.tail + piece)[-32:]
            t.splitting = True
            pos = {"k": key, "off": t.off, "fp": fp, "fpn": fpn, "cut": 1}
            append(Fields(now, name, piece, None, {"path": path, "split": 1, "pos": pos}))
        if rest != t.partial:
            t.partial_since = 0.0 if not rest else t.partial_since
        t.partial = rest

    def _emit_partial(self, t: Tracked, batch: list[Fields] | None = None) -> None:
        t.off += len(t.partial)
        t.tail = (t.tail + t.partial)[-32:]
        pos = {"k": t.key, "off": t.off, "fp": t.fp, "fpn": t.fpn, "cut": 1}
        attrs = {"path": t.path, "partial": 1, "pos": pos}
        if t.splitting:
            attrs["split"] = 1
            t.splitting = False
        f = Fields(self.clock.now_ns(), self.name, t.partial, None, attrs)
        t.partial = b""
        t.partial_since = 0.0
        if batch is not None:
            batch.append(f)
        else:
            self._deliver([f])

    def _deliver(self, batch: list[Fields]) -> None:
        """Hand a batch to the sealer, waiting for room (files lose nothing by waiting).

        Once stop() is called, a batch that does not fit is abandoned: nothing is
        delivered after stop() returns, and those lines are read again from the
        last sealed position by the next start.
        """
        if not batch or self._sink is None:
            return
        while not self._sink.put(batch, block=True, timeout=0.25):
            if self._stop.is_set():
                raise _Stopped

    def _truncated(self, t: Tracked, size: int) -> None:
        t.truncations += 1
        was = t.off + len(t.partial)
        if self._meta is not None:
            self._meta.event(
                ev.FILE_TRUNCATED,
                (
                    f"{t.path} shrank from {was} to {size} bytes (copytruncate?); "
                    if size < was
                    else f"{t.path} was rewritten from the start (read to {was}, now {size} "
                    "bytes: truncated and written again?); "
                )
                + "reading it again from the start",
                source=self.name,
                path=t.path,
                offset=t.off,
                held_partial=len(t.partial),
                size=size,
            )
        if t.partial:  # read before the truncation: sealed (flagged partial), not lost
            self._emit_partial(t)
        if t.off:  # where its copy starts (one per file: an older one's copy was found)
            self._drop_origins(t.key)
            self._origins.append(Origin(t.key, t.fp, t.fpn, t.off, t.tail, True))
        t.off = 0
        t.tail = b""
        self._fingerprint(t, size)
        # The copy exists already (logrotate truncates after copying): open and decide it
        # now, so that its decision is queued (sealed) before any line read from the
        # truncated file. Else a kill -9 in between would leave a sealed position of this
        # file that says nothing about the copy, which would be read again from 0.
        self._scan()
        now = time.monotonic()
        for p in list(self._files.values()):
            if p.pending and p is not t:
                self._decide(p, os.fstat(p.fd).st_size, now)

    def _release(self, t: Tracked) -> None:
        if self._meta is not None:
            self._meta.event(
                ev.FILE_RELEASED,
                f"done with rotated file {t.path} at offset {t.off}",
                source=self.name,
                path=t.path,
                offset=t.off,
                forget=t.key,
            )
        self._close(t)

    def _close(self, t: Tracked) -> None:
        with contextlib.suppress(OSError):
            os.close(t.fd)
        self._files.pop(t.ident, None)
        self._unclaim(t.ident)

    def _note(self, kind: str, what: str, event: str, message: str, **fields: Any) -> None:
        """Meta-log a condition once (until it clears), not on every poll."""
        if (kind, what) in self._noted:
            return
        self._noted.add((kind, what))
        if self._meta is not None:
            self._meta.event(event, message, source=self.name, **fields)


def _pieces(line: bytes, maxlen: int, start: int) -> list[tuple[bytes, int, bool]]:
    """Split an over-long line; each piece with the offset where it ends."""
    out = []
    off = start
    for i in range(0, len(line), maxlen):
        piece = line[i : i + maxlen]
        last = i + maxlen >= len(line)
        off += len(piece) + (1 if last else 0)
        out.append((piece, off, last))
    return out


class _Stopped(Exception):
    """stop() was called while a batch waited for room in the queue."""


def _tail_of(p: Position) -> bytes:
    """The bytes that must stand just before a sealed position's offset."""
    if "tail" in p.pos:  # carried by a meta record: exact bytes
        return bytes.fromhex(str(p.pos["tail"]))
    return p.tail + (b"" if p.pos.get("cut") else b"\n")


def _same_end(a: int, b: int, size: int, n: int = 4096) -> bool:
    """Do two files hold the same bytes just before ``size``?"""
    k = min(n, size)
    return os.pread(a, k, size - k) == os.pread(b, k, size - k)


def _ident_of(key: str) -> tuple[int, int] | None:
    """(dev, ino) from a position key ``source:dev:ino``."""
    try:
        _, dev, ino = key.rsplit(":", 2)
        return int(dev), int(ino)
    except ValueError:
        return None


def _static_dir(pattern: str) -> str:
    """The deepest directory of a glob pattern that has no wildcard."""
    parts = pattern.split(os.sep)
    keep = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        keep.append(part)
    return os.sep.join(keep) or "."
