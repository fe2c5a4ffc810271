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
    """One record per line of ``fh``; a line over :data:`MAX_PIECE` bytes in pieces."""
    split = False
    carry = b""  # the one byte read past a full piece: it starts the next one
    while raw := carry + fh.readline(MAX_PIECE + 1 - len(carry)):
        carry = b""
        more = raw[-1:] != b"\n" and len(raw) > MAX_PIECE
        if more:
            raw, carry = raw[:MAX_PIECE], raw[MAX_PIECE:]
        elif raw[-1:] == b"\n":
            raw = raw[:-1]
        if split or more:
            yield Fields(now(), source, raw, None, {"split": 1})
        else:
            yield Fields(now(), source, raw)
        split = more
