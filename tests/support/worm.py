"""Inode flags in tests: read them, and clear them so that temp dirs can be deleted.

Tests run as root, so a daemon started by any test makes its segments
append-only/immutable (``segments.immutable: auto``); pytest (and
``shutil.rmtree``) can delete such files only after their flags are cleared.
"""

from __future__ import annotations

from pathlib import Path

from auditd_py.store.immutable import FS_APPEND_FL, FS_IMMUTABLE_FL, get_flags, release_tree

__all__ = ["flags", "release_tree"]


def flags(path: Path) -> str:
    """``a``, ``i``, ``ai`` or ``""``: the flags of interest, like lsattr shows them."""
    value = get_flags(path) or 0
    return ("a" if value & FS_APPEND_FL else "") + ("i" if value & FS_IMMUTABLE_FL else "")
