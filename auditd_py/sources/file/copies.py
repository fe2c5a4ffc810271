"""Is a new file a copy of one already read (copytruncate's rotated copy)?

It starts with the same bytes (fingerprint) and has the same bytes just before
the offset we had read the original to: everything before that offset is sealed
already, so reading starts there. This also recovers the lines written between
our last read of the original and its truncation.

The decisions are :mod:`.rotation`'s; this module reads the bytes they compare,
lazily and in their order, since logrotate may truncate an original between
two reads (answered with ``RETRY``, never with a spoiled comparison).
"""

from __future__ import annotations

import os

from auditd_py.sources.file.discovery import Ident
from auditd_py.sources.file.fingerprint import last_bytes, same_end
from auditd_py.sources.file.origins import Origin, Origins
from auditd_py.sources.file.peers import Peers
from auditd_py.sources.file.rotation import (
    RETRY,
    WAIT,
    Head,
    copy_too_short_to_compare,
)
from auditd_py.sources.file.tracked import CHUNK, Tracked


class Copies:
    """Copy decisions against the files being read and the origins left."""

    def __init__(self, files: dict[Ident, Tracked], origins: Origins, fingerprint_bytes: int):
        self.files = files
        self.origins = origins
        self.fingerprint_bytes = fingerprint_bytes

    def copy_origin(self, t: Tracked, size: int, peers: Peers | None = None) -> int | None:
        """A new file that is a copy of one already read: where to start reading it.

        Returns the offset to start at, None (a new file: from 0), WAIT (cannot
        tell yet: a copy of a file we are reading, or one being written) or RETRY
        (a file it was compared with changed meanwhile: decide after its
        truncation is seen, never on a comparison it spoiled).
        """
        t.wait_off, t.wait_tail, t.doubt = 0, b"", None
        if peers is None:  # outside a scan: gathered for this one decision
            peers = Peers(self.files.values())
        head = Head(os.pread(t.fd, min(size, self.fingerprint_bytes), 0))
        compared: list[Tracked] = []  # files whose bytes were read to compare: see 3.
        # 0. It starts like a file we have not read anything of yet: the copy's bytes
        #    would be read there too. Decide once that one is read.
        if peers.unread_starting_with(head.bytes, t):
            return WAIT
        # 1. A copy of a file we are reading (being made, or made and not truncated yet).
        if self._copy_of_live(t, size, head, [o for o in peers.live if o is not t], compared):
            return WAIT
        # 2. A copy of the read part of a file truncated since (live, or while we were
        #    stopped), or of a file gone while we were stopped.
        got, unsure = self._copy_of_origin(t, size, head)
        if got is not None:
            return got
        # 3. Nothing matched: make sure it is not because a file we compared with was
        #    truncated in the middle of the comparison (logrotate runs beside us).
        if any(o.changed() for o in compared):
            return RETRY
        if unsure is not None:
            # Not a prefix of any file now (0., 1.): a finished copy (logrotate copies
            # before it truncates) or a new file. A copy shorter than the fingerprint
            # of a file we read past its end cannot be told from a new file: read from
            # 0 (nothing lost) and meta-logged, decided now so that the event is sealed
            # before anything read from the truncated file.
            t.doubt = unsure
        return None

    def _copy_of_live(
        self, t: Tracked, size: int, head: Head, live: list[Tracked], compared: list[Tracked]
    ) -> bool:
        """A copy of a file we are still reading: True to wait (step 1 of copy_origin)."""
        if t.fpn < self.fingerprint_bytes:
            # Too short to tell yet: if it starts like a file we read (or is still
            # empty), it may be a copy in progress; wait for it to grow, or to stay.
            for o in live:
                # a file closed for being idle is unchanged since (else it was reopened):
                # its first bytes are the ones in memory, no need to open it again
                n = len(head.bytes)
                got = o.head[:n] if o.head_in_memory(n) else os.pread(o.fd, n, 0)
                if got == head.bytes:
                    return True
                if len(got) < len(head.bytes):  # shorter than what we read: truncated meanwhile?
                    compared.append(o)
            return False
        for o in sorted(live, key=lambda o: o.off, reverse=True):
            if not head.starts_like(o.fp, o.fpn):
                continue
            if o.off > size:
                # Not yet as long: a copy being written is a prefix of a file we are
                # reading (logrotate truncates only after copying); anything else is new.
                if same_end(o.fd, t.fd, size):
                    # all of it was read from the original already, should it stay so
                    t.wait_off = size
                    t.wait_tail = last_bytes(t.fd, size)
                    return True
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
                return True
        return False

    def _copy_of_origin(
        self, t: Tracked, size: int, head: Head
    ) -> tuple[int | None, Origin | None]:
        """Step 2 of copy_origin: (offset to start at or None, an origin it may copy)."""
        unsure: Origin | None = None
        for org in self.origins.longest_first():
            tail = org.before
            if not head.starts_like(org.fp, org.fpn):
                if copy_too_short_to_compare(org, size):
                    at = org.off - len(tail)
                    if size >= org.off:
                        if os.pread(t.fd, len(tail), at) == tail:
                            return self._take(t, org, tail, org.off), None
                    elif size <= at or os.pread(t.fd, size - at, at) == tail[: size - at]:
                        unsure = unsure or org  # ends before them: cannot tell
                continue
            if org.off > size:
                if org.truncated:
                    # Copied before we read the original further (it kept growing
                    # until its truncation): all of it is sealed already.
                    return self._take(t, org, last_bytes(t.fd, size), size), None
                t.doubt = org  # the file is gone: nothing says this is its copy
                continue
            if os.pread(t.fd, len(tail), org.off - len(tail)) == tail:
                return self._take(t, org, tail, org.off), None
        return None, unsure

    def _take(self, t: Tracked, org: Origin, tail: bytes, off: int) -> int:
        self.origins.take(org)
        t.tail = tail
        return off

    def copied_lines(self, t: Tracked, org: Origin) -> tuple[int, int]:
        """(bytes, lines) of ``t`` that may repeat the sealed part of ``org``."""
        size = os.fstat(t.fd).st_size
        n = min(size, org.off)
        lines = 0
        for at in range(0, n, CHUNK):
            lines += os.pread(t.fd, min(CHUNK, n - at), at).count(b"\n")
        return n, lines
