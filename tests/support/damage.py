"""Random damage to an archive's segment files, for the property tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import strategies as st

from tests.support.archive import Arc

Mutation = tuple[str, int, int, bytes]
mutations = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "dup_line", "drop_line", "swap", "truncate"]),
    st.integers(0, 10**6),
    st.integers(1, 300),
    st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, m: Mutation) -> bytes:
    """One random change to a segment file's bytes."""
    op, at, n, junk = m
    if not data:
        return junk
    i = at % len(data)
    lines = data.splitlines(keepends=True)
    k = at % len(lines)
    if op == "flip":
        return data[:i] + bytes([data[i] ^ (1 << (n % 8))]) + data[i + 1 :]
    if op == "delete":
        return data[:i] + data[i + n :]
    if op == "insert":
        return data[:i] + junk + data[i:]
    if op == "dup_line":
        return b"".join([*lines[: k + 1], lines[k], *lines[k + 1 :]])
    if op == "drop_line":
        return b"".join(lines[:k] + lines[k + 1 :])
    if op == "swap":
        j = (k + n) % len(lines)
        lines[k], lines[j] = lines[j], lines[k]
        return b"".join(lines)
    return data[:i]


@contextmanager
def sealed(msgs: list[list[bytes]], max_records: int | None) -> Iterator[Arc]:
    d = Path(tempfile.mkdtemp(prefix="adp-fast-"))
    try:
        arc = Arc(d)
        for batch in msgs:
            arc.seal(batch, max_records=max_records)
        yield arc
    finally:
        shutil.rmtree(d)
