"""How many records of a run certainly fit in what is left of a segment (rotation by size).

The seal loop rotates a segment once it reaches ``max_bytes``, and must do so
before the record after the one that crossed it, whatever the batch size (a
restart with a backlog hands it hundreds of thousands at once). Checking the
writer's offset after every record would cost a call per record in the hot
path; instead the loop seals a run in chunks that cannot cross the limit, by an
upper bound of each record's encoded size, and then record by record near it.
The chunks shrink geometrically: a segment takes a few dozen appends.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from auditd_py.chain.encoding import SEAL_SUFFIX_LEN, Fields

_FIXED = 200 + SEAL_SUFFIX_LEN + 1
"""The body's fixed keys with 20-digit seq, epoch and time and the 30-byte ts, the seal
and the newline: more than any record's share that does not depend on its fields."""


def size_bound(f: Fields) -> int:
    """An upper bound of the bytes the sealed line of ``f`` takes (pure).

    A byte of the message takes at most 6 bytes (``\\u00XX``) and, when the message
    is not UTF-8, 4/3 more in ``raw_b64``; a character of the source or event at most 6.
    """
    n = _FIXED + 8 * len(f.message) + 6 * len(f.source)
    if f.event is not None:
        n += 12 + 6 * len(f.event)
    if f.raw_attrs is not None:
        n += 9 + len(f.raw_attrs)
    elif f.attrs:
        n += 9 + len(orjson.dumps(f.attrs))
    return n


def fitting(run: Sequence[Fields], start: int, room: int) -> int:
    """The end ``j > start`` of the longest chunk ``run[start:j]`` sure to fit in ``room``.

    At least one record: when none is sure to fit, the next record is sealed alone
    (and is the one that crosses the limit, if any). :func:`size_bound` inlined: this
    runs once per sealed record.
    """
    j = start
    n = len(run)
    fixed = _FIXED
    while j < n:
        f = run[j]
        raw = f.raw_attrs
        room -= fixed + 8 * len(f.message) + 6 * len(f.source)
        if raw is not None:
            room -= 9 + len(raw)
        elif f.attrs:
            room -= 9 + len(orjson.dumps(f.attrs))
        if f.event is not None:
            room -= 12 + 6 * len(f.event)
        if room < 0:
            break
        j += 1
    return max(j, start + 1)
