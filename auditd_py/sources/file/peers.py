"""The files a new file is compared with, gathered once per scan.

A scan that finds thousands of new files (a start, a directory filled at once)
compares each with the others (:mod:`.copies`): gathering them for every new
file, and testing every unread file's head against it, made that quadratic
(10,000 one-line files: two minutes). :class:`Peers` gathers them once: the
files being read (``live``), and the heads of the files not read yet, sorted,
so that "does an unread file start with these bytes" is a binary search.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from auditd_py.sources.file.tracked import Tracked


class Peers:
    def __init__(self, files: Iterable[Tracked]) -> None:
        self.live: list[Tracked] = []
        self._heads: list[tuple[bytes, int]] = []
        self._by_id: dict[int, Tracked] = {}
        for o in files:
            self.add(o)

    def add(self, o: Tracked) -> None:
        """A file opened during the scan (or found at its start)."""
        if o.pending:
            return
        if o.off:
            self.live.append(o)
        elif not o.partial:
            insort(self._heads, (o.head, id(o)))
            self._by_id[id(o)] = o

    def unread_starting_with(self, head: bytes, t: Tracked) -> bool:
        """A file other than ``t``, nothing of it read yet, that starts with ``head``.

        Such a file may be the original of a copy opened by the same scan (at a
        start while logrotate is copying): the copy's bytes would be read there
        too, so the copy waits until that one is read. O(log n) per question.
        """
        if not head:
            return False
        heads = self._heads
        i = bisect_left(heads, (head,))
        while i < len(heads) and heads[i][0].startswith(head):
            o = self._by_id[heads[i][1]]
            if o is not t and not o.off and not o.partial and not o.pending:
                return True
            i += 1
        return False
