"""``show -f``: records as they are sealed, across segment rotation and compression.

A :class:`~auditd_py.forward.tail.SealedTail` (the forwarders' reader) reads
complete lines from a (segment, offset) position on; when a segment is closed
it goes on in the next one, and a segment compressed meanwhile is read through
its compressed file from the same offset. Seqs already printed are skipped,
so a record is printed once even though the first screenful (``-n``) was read
while the daemon kept sealing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from auditd_py.chain.format import SEGMENT_NAME, segment_name
from auditd_py.forward.tail import SealedTail
from auditd_py.show.entry import Entry
from auditd_py.show.query import Query
from auditd_py.store.layout import Layout

Position = tuple[str | None, int]


def end_position(layout: Layout) -> Position:
    """Where the archive ends now: the last segment, after its last complete line."""
    files = layout.segment_files()
    if not files:
        return None, 0
    name, path = files[-1]
    if path.name != name:  # compressed: closed, so the next record opens a new segment
        m = SEGMENT_NAME.fullmatch(name)
        return (segment_name(int(m["no"]) + 1) if m else name), 0
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            back = min(size, 1 << 16)
            fh.seek(size - back)
            tail = fh.read(back)
    except FileNotFoundError:  # compressed just now
        return end_position(layout)
    cut = tail.rfind(b"\n")
    return name, (size - back + cut + 1) if cut >= 0 else max(0, size - back)


def follow(
    layout: Layout,
    q: Query,
    start: Position,
    after_seq: int,
    wait: Callable[[], bool],
) -> Iterator[Entry]:
    """Selected records sealed after ``start`` with seq above ``after_seq``, forever.

    ``wait()`` is called when nothing new was found; it sleeps and returns
    whether to go on (the CLI's sleeps until Ctrl-C).
    """
    tail = SealedTail(layout, lambda: None)
    segment, offset = start
    try:
        while True:
            batch = tail.read(segment, offset, 1024)
            segment, offset = batch.segment, batch.offset
            for seq, line in batch.lines:
                if seq <= after_seq:
                    continue
                after_seq = seq
                e = Entry.parse(segment or "", line)
                if q.matches_entry(e):
                    yield e
            if not batch.lines and not wait():
                return
    finally:
        tail.close()
