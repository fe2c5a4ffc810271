"""Origins: the read part of files we no longer read at that offset.

A copy of such a file (copytruncate's rotated copy, or a file renamed while we
were stopped) holds nothing new before the origin's offset: it is read from
there. Origins are compared by identity (a file may doubt one origin, which
another file may then take as its copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


# Not frozen: `polls` ages in place, and identity (eq=False) is what other
# files' doubts refer to, so an origin is never replaced by an updated copy.
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

    @property
    def before(self) -> bytes:
        """The bytes just before ``off``, as a copy must hold them."""
        return self.tail[-self.off :]


class Origins:
    """The origins no copy has claimed yet."""

    def __init__(self) -> None:
        self._list: list[Origin] = []

    def __contains__(self, org: object) -> bool:
        return org in self._list

    def __iter__(self) -> Iterator[Origin]:
        return iter(self._list)

    def add(self, org: Origin) -> None:
        self._list.append(org)

    def take(self, org: Origin) -> None:
        """A copy of ``org`` was found: no other file is."""
        self._list.remove(org)

    def drop(self, key: str) -> None:
        """The file ``key`` is read again (or gone): it stands for no copy."""
        self._list = [o for o in self._list if o.key != key]

    def longest_first(self) -> list[Origin]:
        return sorted(self._list, key=lambda o: o.off, reverse=True)

    def age(self, *, any_pending: bool) -> None:
        """Forget origins no copy claimed.

        A copy exists before its original is truncated, so it is found by the scan
        that follows the truncation (or at start), or it is pending already and
        decided by the next poll. Kept two polls, and while any file is pending;
        else a file that appears much later could be taken for a copy.
        """
        for o in self._list:
            o.polls += 1
        if not any_pending:
            self._list = [o for o in self._list if o.polls < 2]
