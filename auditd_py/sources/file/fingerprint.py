"""What identifies a file's content: a fingerprint of its first bytes, and the
bytes just before an offset (``TAIL`` of them), which identify a copy of the
part of a file read so far."""

from __future__ import annotations

import hashlib
import os

TAIL = 32
"""How many bytes before an offset are kept to recognise that offset in a copy."""


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def last_bytes(fd: int, size: int) -> bytes:
    """The last ``TAIL`` bytes (or fewer) of the first ``size`` bytes of ``fd``."""
    n = min(TAIL, size)
    return os.pread(fd, n, size - n)


def same_end(a: int, b: int, size: int, n: int = 4096) -> bool:
    """Do two files hold the same bytes just before ``size``?"""
    k = min(n, size)
    return os.pread(a, k, size - k) == os.pread(b, k, size - k)
