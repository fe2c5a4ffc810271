"""Reading the records a :class:`Query` selects, forwards or backwards, without
reading what cannot match.

Where to start comes from small reads, never from a scan of the archive:

* ``--seq A..`` and ``--since T``: a bisection over the segments' header
  records (each states the seq and time at which its segment opened), and
  for ``--since`` a bisection over the checkpoints (each states the time its
  epoch ended and the seq it ends at). A record is sealed after it was read,
  so its time is at most the time the next segment or epoch began: segment k
  can hold a record at or after T only if segment k+1 opened at or after T.
* ``-n N`` and ``-r``: the segments from the last one back, a plain segment
  read backwards in blocks from its end; reading stops once N records matched.

Inside a segment the seq and time of each line are read from its first bytes
before the line is parsed as JSON. A torn last line (the writer is mid-write)
is not a record yet and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import scan_int
from auditd_py.errors import ArchiveError, AuditdError, Failure, IntegrityError
from auditd_py.show.entry import Entry
from auditd_py.show.query import Query
from auditd_py.store.bounded import CORRUPT, MAX_RECORD_BYTES, open_lines
from auditd_py.store.compress import is_compressed
from auditd_py.store.layout import SEGMENTS, Layout
from auditd_py.store.segment import Header, read_header

_BLOCK = 1 << 16
Files = list[tuple[str, Path]]


def _open(layout: Layout, name: str, path: Path) -> tuple[IO[bytes], bool]:
    """The segment's lines, and whether they come from a compressed file."""
    try:
        try:  # bounded lines, regular files only (store.bounded)
            return open_lines(path, f"{SEGMENTS}/{path.name}"), is_compressed(path)
        except FileNotFoundError:  # compressed since it was listed
            alt = layout.segment_path(name)
            return open_lines(alt, f"{SEGMENTS}/{alt.name}"), is_compressed(alt)
    except OSError as exc:
        raise ArchiveError(f"cannot read: {exc.strerror}", file=str(path)) from exc


def _quick(line: bytes) -> tuple[int, int]:
    """(seq, time) from the fixed start of a record line, -1 where absent."""
    head = line[:96]
    seq, t = scan_int(head, b"seq"), scan_int(head, b"time")
    return (-1 if seq is None else seq), (-1 if t is None else t)


def _bisect(n: int, ok: Callable[[int], bool]) -> int:
    """The first i in [0, n) with ok(i) (ok is monotone: False… then True…), else n."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class Segments:
    """The archive's segment files and, read on demand and kept, their headers."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.files: Files = layout.segment_files()
        self._headers: dict[int, Header | None] = {}

    def header(self, i: int) -> Header | None:
        if i not in self._headers:
            name, path = self.files[i]
            try:
                self._headers[i] = read_header(path, name)
            except AuditdError:
                self._headers[i] = None
            except CORRUPT:
                self._headers[i] = None
        return self._headers[i]

    def _opened_before(self, i: int, *, seq: int | None = None, t: int | None = None) -> bool:
        """Whether segment i opened at or before ``seq`` / before time ``t``."""
        h = self.header(i)
        if h is None:
            return False  # unknown: do not skip what comes before it
        return (seq is not None and h.seq <= seq) or (t is not None and h.time_ns < t)

    def first_for(self, q: Query) -> tuple[int, int]:
        """The index of the first segment that can hold a record ``q`` selects, and a
        seq below which nothing is selected (0 if none is known)."""
        n = len(self.files)
        start = 0
        lo_seq = q.seq[0] if q.seq is not None else None
        if q.since is not None:
            cp_seq = seq_before(self.layout, q.since)
            lo_seq = cp_seq if lo_seq is None else max(lo_seq, cp_seq)
        if lo_seq is not None and lo_seq > 0:
            # the last segment whose header seq <= lo_seq: the first where the next opened later
            k = _bisect(n, lambda i: not self._opened_before(i, seq=lo_seq))
            start = max(start, k - 1)
        if q.since is not None:
            # skip segment i when segment i+1 opened before `since`
            k = _bisect(n, lambda i: not self._opened_before(i, t=q.since))
            start = max(start, k - 1)
        return max(start, 0), max(lo_seq or 0, 0)


def seq_before(layout: Layout, since: int) -> int:
    """A seq below which every record is older than ``since`` (0 if none is known).

    The checkpoint of an epoch that ended before ``since`` covers only records
    read before it ended; the newest such checkpoint's ``seq_end`` is the bound.
    """
    try:
        names = sorted(p.name for p in layout.checkpoints.glob("cp-*.json"))
    except OSError:
        return 0

    def ended(i: int) -> Checkpoint | None:
        try:
            return Checkpoint.from_line((layout.checkpoints / names[i]).read_bytes(), file=names[i])
        except (OSError, AuditdError):
            return None

    def after(i: int) -> bool:
        cp = ended(i)
        return cp is None or cp.end >= since

    k = _bisect(len(names), after)
    if k == 0:
        return 0
    cp = ended(k - 1)
    return cp.seq_end if cp is not None else 0


def _forward_lines(fh: IO[bytes]) -> Iterator[bytes]:
    for raw in fh:
        if raw[-1:] != b"\n":
            return  # torn: being written
        yield raw[:-1]


def seek_seq(fh: IO[bytes], target: int, window: int = _BLOCK) -> int:
    """A line start in a plain segment before which every line has a seq below ``target``,
    at most ``window`` bytes (and a line) before the first line at or above it.

    A bisection over byte offsets: seqs increase line by line within a segment.
    """
    lo, hi = 0, fh.seek(0, 2)
    while hi - lo > window:
        mid = (lo + hi) // 2
        fh.seek(max(mid - 1, 0))
        fh.readline()  # to the end of the line byte mid - 1 is in, so that a line
        start = fh.tell()  # starting at ``mid`` itself is not passed over
        seq, _ = _quick(fh.readline())
        if 0 <= seq < target and start < hi:
            lo = start
        else:  # at or above the target, unreadable, or the end: look left
            hi = mid
    return lo


def backward_lines(fh: IO[bytes], block: int = _BLOCK, end: int | None = None) -> Iterator[bytes]:
    """The complete lines of a plain file before ``end`` (a line start; default the
    end of the file), last first, read in blocks backwards (a last line without
    its newline is torn: not a line yet)."""
    pos = fh.seek(0, 2) if end is None else end
    carry = b""
    torn = True  # still inside the bytes after the last newline
    while pos > 0:
        n = min(block, pos)
        pos -= n
        fh.seek(pos)
        buf = fh.read(n) + carry
        if len(buf) > MAX_RECORD_BYTES + block:  # no newline in more than a record may hold
            raise IntegrityError(
                f"record line longer than the format's maximum of {MAX_RECORD_BYTES} bytes",
                what=Failure.FORMAT,
                file=getattr(fh, "label", None),
            )
        if torn:
            end = buf.rfind(b"\n")
            if end < 0:
                carry = b""
                continue
            buf, torn = buf[:end], False
        parts = buf.split(b"\n")
        carry = parts[0]
        for line in reversed(parts[1:]):
            if line:
                yield line
    if carry:
        yield carry


def forward(layout: Layout, q: Query) -> Iterator[Entry]:
    """Selected records, oldest first."""
    segs = Segments(layout)
    hi = q.seq[1] if q.seq is not None else None
    lo = q.seq[0] if q.seq is not None else -1
    since = q.since if q.since is not None else -1
    first, lo_seq = segs.first_for(q)
    for i, (name, path) in enumerate(segs.files[first:]):
        fh, compressed = _open(layout, name, path)
        with fh:
            if i == 0 and lo_seq > 0 and not compressed:
                fh.seek(seek_seq(fh, lo_seq))
            for line in _forward_lines(fh):
                seq, t = _quick(line)
                if hi is not None and seq > hi:
                    return
                if seq < lo or t < since:
                    continue
                e = Entry.parse(name, line)
                if q.matches_entry(e):
                    yield e


def _end_at(fh: IO[bytes], hi: int) -> int | None:
    """The start of the first line with a seq above ``hi`` (None: there is none)."""
    fh.seek(seek_seq(fh, hi + 1))
    while True:
        at = fh.tell()
        line = fh.readline()
        if not line.endswith(b"\n"):
            return None
        seq, _ = _quick(line)
        if seq > hi:
            return at


def backward(layout: Layout, q: Query) -> Iterator[Entry]:
    """Selected records, newest first (stops where nothing older can match)."""
    segs = Segments(layout)
    stop = segs.first_for(q)[0] if (q.since is not None or q.seq is not None) else 0
    lo = q.seq[0] if q.seq is not None else -1
    hi = q.seq[1] if q.seq is not None else None
    for i in range(len(segs.files) - 1, stop - 1, -1):
        name, path = segs.files[i]
        fh, compressed = _open(layout, name, path)
        with fh:
            if compressed:
                lines: Iterator[bytes] = reversed(list(_forward_lines(fh)))
            else:
                lines = backward_lines(fh, end=_end_at(fh, hi) if hi is not None else None)
            for line in lines:
                seq, _ = _quick(line)
                if hi is not None and seq > hi:
                    continue
                if seq < lo:
                    return
                e = Entry.parse(name, line)
                if q.matches_entry(e):
                    yield e
