"""The input of ``auditd-py seal``: lines of files or stdin as records, in bounded memory.

A line longer than :data:`MAX_PIECE` is sealed in pieces flagged ``split`` (as
the file source does), never read whole: no record comes near the format's
maximum line length (docs/FORMAT.md 3.1), whatever the input holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO, Final

from auditd_py.chain.encoding import META_SOURCE, Fields
from auditd_py.errors import UsageError

MAX_PIECE: Final = 1024 * 1024
"""The longest message ``seal`` puts in one record (as ``max_line_bytes`` at most)."""
_READ: Final = 1 << 20


def source_name(arg: str | None) -> str | None:
    """``--source`` as a record's source name; anything but the daemon's own meta source.

    A name that is not valid UTF-8 is decoded with U+FFFD replacements (FORMAT.md 8.1).
    """
    name = os.fsencode(arg).decode("utf-8", "replace") if arg else None
    if name == META_SOURCE:
        raise UsageError(
            f"--source {META_SOURCE!r} is reserved for the daemon's own records; "
            "choose another source name"
        )
    return name


def records(fh: IO[bytes], source: str, now: Callable[[], int]) -> Iterator[Fields]:
    """One record per line of ``fh``; a line over :data:`MAX_PIECE` bytes in pieces.

    Read as it arrives (``read1``: a pipe's lines are sealed as they come), split
    in bulk; at most one piece plus one read is held.
    """
    read = getattr(fh, "read1", fh.read)
    rest = b""
    split = False  # pieces of the current line were yielded already
    while chunk := read(_READ):
        lines = (rest + chunk if rest else chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if split or len(line) > MAX_PIECE:
                yield from _pieces(line, source, now)
            else:
                yield Fields(now(), source, line)
            split = False
        while len(rest) > MAX_PIECE:  # no newline yet: its pieces go as they fill
            yield Fields(now(), source, rest[:MAX_PIECE], None, {"split": 1})
            rest, split = rest[MAX_PIECE:], True
    if rest:
        yield from _pieces(rest, source, now) if split else [Fields(now(), source, rest)]


def _pieces(line: bytes, source: str, now: Callable[[], int]) -> Iterator[Fields]:
    """The (last) pieces of an over-long line, each flagged ``split``."""
    for i in range(0, max(len(line), 1), MAX_PIECE):
        yield Fields(now(), source, line[i : i + MAX_PIECE], None, {"split": 1})
