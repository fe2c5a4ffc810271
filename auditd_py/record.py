"""What flows from the sources to the sealer.

A source emits :class:`Fields` (defined with the chain's encoding, since its
bytes are what gets sealed): the time it read the line, its own name, the
original bytes, and ``attrs`` with where the line came from. A source that can
resume (files, journald) puts its position in ``attrs["pos"]``; ``pos["k"]``
names the position (unique per source and file/stream). Because the position
is sealed with the record, the archive itself is the write-ahead log: on
restart each source resumes from the last *sealed* position, so a line is
never lost and never sealed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auditd_py.chain.encoding import META_SOURCE, Fields

__all__ = ["META_SOURCE", "Fields", "Position", "pos_key"]


@dataclass(frozen=True, slots=True)
class Position:
    """A sealed source position as recovered from the archive."""

    pos: Mapping[str, Any]
    tail: bytes
    """The last bytes (up to 32) of the record that carried this position."""


def pos_key(source: str, *parts: object) -> str:
    """The name of a resumable position: ``source:part:part``."""
    return ":".join([source, *(str(p) for p in parts)])
