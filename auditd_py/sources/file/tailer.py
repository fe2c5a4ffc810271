"""The file source's thread: it polls every file, reads what is new, and acts on
rotations and truncations (the decisions are :mod:`.rotation`'s and
:mod:`.copies`'; finding and opening files is :class:`~.scanner.Scanner`'s).

watchdog (inotify) wakes the tailer early; polling every ``poll_interval`` is
the fallback and the guarantee.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from auditd_py import events as ev
from auditd_py.clock import Clock
from auditd_py.config import FileSource
from auditd_py.contracts import Meta, Sink
from auditd_py.record import Fields, Position
from auditd_py.sources.file import budget, discovery, lines
from auditd_py.sources.file.origins import Origin
from auditd_py.sources.file.rotation import WAIT, decided_offset, let_go, truncation, undecided
from auditd_py.sources.file.scanner import Scanner
from auditd_py.sources.file.tracked import CHUNK, Tracked
from auditd_py.sources.heartbeat import STUCK_AFTER, Heartbeat

BATCH = 2048
BATCH_BYTES = 4 * 1024 * 1024
"""A batch goes to the queue after this many bytes read, too: long lines stream."""


# Over ~300 lines since issue 14: one thread's loop over rotation, truncation, copies,
# the descriptor budget and its heartbeat; the decisions themselves are in rotation.py,
# copies.py and budget.py, and finding and opening files in scanner.py.
class FileTailer(Scanner):
    """A ``type: file`` source."""

    def __init__(self, settings: FileSource, clock: Clock) -> None:
        super().__init__(settings, clock)
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self.heartbeat = Heartbeat(clock, max(STUCK_AFTER, 20 * settings.poll_interval / 1e9))

    # ------------------------------------------------------------ lifecycle

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        self._sink, self._meta = sink, meta
        for key, why in self._resume.load(positions):
            meta.event(
                ev.FILE_POSITION_INVALID,
                f"sealed position {key} cannot be read ({why}); ignored",
                source=self.name,
                forget=key,
            )
        with self._lock:
            self._scan()
            self._find_rotated_while_stopped()
        self._watch()
        self._thread = threading.Thread(target=self._loop, name=f"file:{self.name}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        def on_error(what: str, message: str) -> None:
            self._note("watch", what, ev.SOURCE_ERROR, message)

        self._observer = discovery.watch(self.settings.paths, self._wake, on_error)

    def _loop(self) -> None:
        interval = self.settings.poll_interval / 1e9
        while not self._stop.is_set():
            self.heartbeat.beat()
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
        if self._thread is not None:  # a stuck thread will not finish: no long wait for it
            self._thread.join(1 if self.heartbeat.stuck_for() is not None else 10)
        # A thread stuck in a read holds the lock: give up on it, the process ends anyway.
        if self._lock.acquire(timeout=2):
            try:
                for t in list(self._files.values()):
                    self._close(t)
            finally:
                self._lock.release()

    def healthy(self) -> tuple[bool, str]:
        alive = self._thread is not None and self._thread.is_alive()
        if not alive and not self._stop.is_set():
            return False, "file tailer thread is not running"
        stuck = self.heartbeat.stuck_for() if alive else None
        if stuck is not None:
            return False, f"file tailer thread stuck: no progress for {stuck:.0f}s"
        return (not self.error, self.error)

    def stats(self) -> dict[str, int]:
        # No lock: a scrape must never wait for the tailer (len() of a dict is atomic).
        return {"files": len(self._files), "lines": self.lines}

    # ------------------------------------------------------------ polling

    def _poll(self) -> bool:
        """One pass over every file; True if any data was read."""
        quiet = {id(t) for t in list(self._files.values()) if not self._awake(t)}
        for t in list(self._files.values()):
            # Truncations first: a copy found by the scan starts where its original,
            # truncated since our last read, was read to (see _truncated).
            if not t.pending and id(t) not in quiet:
                with contextlib.suppress(OSError):  # reported by _read
                    self._recheck(t)
        self._scan()
        busy = False
        now = time.monotonic()
        for t in list(self._files.values()):
            self.heartbeat.beat()
            if id(t) in quiet:
                continue
            try:
                busy |= self._read(t, now)
                self._check_rotation(t, now)
            except OSError as exc:
                self._note("read", t.path, ev.SOURCE_ERROR, f"reading {t.path}: {exc.strerror}")
        while self._deferred and not self._stop.is_set():  # past the descriptor budget
            new = self.open_deferred()
            for t in new:
                self.heartbeat.beat()
                with contextlib.suppress(OSError):  # reported at the next poll
                    busy |= self._read(t, now)
            if not new:
                break
        self._origins.age(any_pending=any(t.pending for t in self._files.values()))
        if self._fds.open > self.settings.max_open_files:
            budget.make_room(self._files.values(), self._fds, self.settings.max_open_files)
        return busy

    def _awake(self, t: Tracked) -> bool:
        """Open, or closed for being idle and changed since (:func:`.budget.awake`)."""
        got = budget.awake(t, self.settings.paths)
        if got is None:  # gone while closed: nothing more can be read of it
            if t.partial:
                self._emit_partial(t)
            self._release(t)
        return bool(got)

    def _recheck(self, t: Tracked) -> bool:
        """Handle a truncation of ``t`` not seen yet; True if there was one."""
        if not t.changed():
            return False
        size = t.size()
        if t.off or t.partial:
            self._truncated(t, size)
        else:  # nothing read yet: only the fingerprint of what is there to read changes
            t.refingerprint(self.settings.fingerprint_bytes, size)
        return True

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
        elif let_go(now, t.last_data, t.rotated_at, self.rotate_wait):
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

    def _decide(self, t: Tracked, size: int, now: float) -> bool:
        """A deferred file: is it a copy of one we read? True once decided."""
        fb = self.settings.fingerprint_bytes
        if size > t.fpn and t.fpn < fb:
            t.refingerprint(fb, size)
        if size != t.seen_size:
            t.seen_size, t.last_data = size, now
        for o in list(self._files.values()):
            # An original truncated since its last read must be seen as such before
            # deciding: its offset at truncation is where its copy starts.
            if o is not t and not o.pending:
                self._recheck(o)
        if not t.pending:  # decided meanwhile: a truncation decides pending copies at once
            return True
        got = self._copies.copy_origin(t, size)
        if undecided(got, now - t.last_data, self.rotate_wait):
            return False
        t.pending = False
        if got == WAIT and t.wait_off:  # a copy of a file that was not truncated
            t.tail = t.wait_tail
        t.off = decided_offset(got, t.wait_off)
        if self._meta is not None:
            self._meta.event(
                ev.FILE_OPENED,
                f"{'copy' if t.off else 'new'} {t.path} at offset {t.off}",
                source=self.name,
                path=t.path,
                offset=t.off,
                how="copy" if t.off else "new",
                **({"pos": t.position_with_tail()} if t.off else {}),
            )
        self._doubted(t)
        return True

    # ------------------------------------------------------------ reading

    def _read(self, t: Tracked, now: float) -> bool:
        size = t.size()
        if t.pending and not self._decide(t, size, now):
            return False
        if self._recheck(t):  # shrank, or rewritten from the start and already longer again
            size = t.size()
        pos = t.off + len(t.partial)
        if t.fpn < self.settings.fingerprint_bytes and size > t.fpn:
            t.refingerprint(self.settings.fingerprint_bytes, size)
        got = False
        batch: list[Fields] = []
        maxlen = self.settings.max_line_bytes
        held = 0
        while pos < size and not self._stop.is_set():
            chunk = os.pread(t.fd, min(CHUNK, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            held += len(chunk)
            got = True
            data = t.partial + chunk if t.partial else chunk
            self.lines += lines.split(t, data, batch, self.name, maxlen, self.clock.now_ns())
            if len(batch) >= BATCH or held >= BATCH_BYTES:
                self._deliver(batch)
                batch, held = [], 0
        if got:
            t.last_data = now
            if t.partial and not t.partial_since:
                t.partial_since = now
        elif t.partial and now - t.partial_since >= self.settings.partial_line_timeout / 1e9:
            self._emit_partial(t, batch)
        self._deliver(batch)
        return got

    def _emit_partial(self, t: Tracked, batch: list[Fields] | None = None) -> None:
        f = lines.partial(t, self.name, self.clock.now_ns())
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
            self.heartbeat.beat()  # waiting for the sealer is not being stuck
            if self._stop.is_set():
                raise _Stopped

    # ------------------------------------------------------------ rotation

    def _truncated(self, t: Tracked, size: int) -> None:
        t.truncations += 1
        was = t.off + len(t.partial)
        if self._meta is not None:
            self._meta.event(
                ev.FILE_TRUNCATED,
                (
                    f"{t.path} shrank from {was} to {size} bytes (copytruncate?); "
                    if truncation(was, size) == "shrank"
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
            self._origins.drop(t.key)
            self._origins.add(Origin(t.key, t.fp, t.fpn, t.off, t.tail, True))
        t.off = 0
        t.tail = b""
        t.refingerprint(self.settings.fingerprint_bytes, size)
        # The copy exists already (logrotate truncates after copying): open and decide it
        # now, so that its decision is queued (sealed) before any line read from the
        # truncated file. Else a kill -9 in between would leave a sealed position of this
        # file that says nothing about the copy, which would be read again from 0.
        self._scan()
        now = time.monotonic()
        for p in list(self._files.values()):
            if p.pending and p is not t:
                self._decide(p, p.size(), now)

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


class _Stopped(Exception):
    """stop() was called while a batch waited for room in the queue."""
