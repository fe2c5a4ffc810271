"""Which per-record loop runs: the compiled one or the pure-Python reference.

The compiled loop (``auditd_py/chain/_fast.c``, libsodium's BLAKE2b) is built
by ``pip install`` where a compiler and libsodium's headers are present; it
does the same steps as the pure loops of :mod:`~auditd_py.chain.seal` and
:mod:`~auditd_py.chain.verify` over many records per call. Without it, or with
``AUDITD_PY_PURE=1`` in the environment, the pure loop runs: the reference,
and what an auditor's machine without a compiler uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from auditd_py.chain.encoding import Fields

PURE_ENV = "AUDITD_PY_PURE"


class Loop(Protocol):
    """What the compiled module offers (its signatures are in ``_fast.pyi``)."""

    @property
    def sodium_version(self) -> str: ...

    def seal(
        self,
        bodies: list[bytes],
        seq: int,
        link: bytes,
        mac: bytes,
        key: bytes,
        stack: list[bytes],
        /,
    ) -> tuple[bytes, bytes, bytes]: ...

    def seal_fields(
        self,
        batch: list[Fields],
        start: int,
        deadline: int,
        stop: int,
        seq: int,
        epoch: int,
        link: bytes,
        mac: bytes,
        key: bytes,
        stack: list[bytes],
        encode: Callable[[int, int, Fields], bytes],
        /,
    ) -> tuple[bytes, int, bytes, bytes]: ...

    def verify_run(
        self,
        lines: list[bytes],
        start: int,
        seq: int,
        epoch: int,
        link: bytes,
        mac: bytes,
        key: bytes | None,
        stack: list[bytes],
        boundary: int,
        /,
    ) -> tuple[int, int, bytes, bytes, int]: ...


_compiled: Loop | None
try:
    from auditd_py.chain import _fast as _compiled
except ImportError:  # not built (no compiler or libsodium headers at install time)
    _compiled = None

_forced = os.environ.get(PURE_ENV, "") not in ("", "0")


def compiled() -> Loop | None:
    """The compiled loop, or None when the pure loop is to run."""
    return None if _forced else _compiled


def force_pure(pure: bool) -> bool:
    """Force (or stop forcing) the pure loop in this process; returns the previous setting."""
    global _forced  # noqa: PLW0603 - one process-wide switch, like the environment variable
    before = _forced
    _forced = pure
    return before


def available() -> bool:
    """Whether the compiled loop was built (whether or not it is forced off)."""
    return _compiled is not None


def describe() -> str:
    """The active path, for ``auditd-py --version``."""
    if _compiled is None:
        return "pure Python, compiled loop not built"
    if _forced:
        return f"pure Python, forced by {PURE_ENV}"
    return f"compiled, libsodium {_compiled.sodium_version}"
