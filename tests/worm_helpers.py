"""Inode flags in tests: read them, and clear them so that temp dirs can be deleted.

Tests run as root, so a daemon started by any test makes its segments
append-only/immutable (``segments.immutable: auto``); pytest (and
``shutil.rmtree``) can delete such files only after their flags are cleared.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from auditd_py.errors import AuditdError
from auditd_py.store.immutable import FS_APPEND_FL, FS_IMMUTABLE_FL, get_flags, release


def flags(path: Path) -> str:
    """``a``, ``i``, ``ai`` or ``""``: the flags of interest, like lsattr shows them."""
    value = get_flags(path) or 0
    return ("a" if value & FS_APPEND_FL else "") + ("i" if value & FS_IMMUTABLE_FL else "")


def release_tree(root: Path) -> int:
    """Clear +a/+i on everything below ``root`` (symlinks not followed); how many had them."""
    cleared = 0
    if not root.is_dir() or root.is_symlink():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            with contextlib.suppress(OSError, AuditdError):
                if flags(p):
                    release(p)
                    cleared += 1
    return cleared
