"""One exception tree for the whole package.

::

    AuditdError                      any failure auditd-py reports (exit 2 unless below)
    ├── UsageError                   bad arguments or options
    ├── ConfigError                  invalid configuration value
    ├── KeyFileError                 missing, malformed or loosely-permissioned key file
    ├── ArchiveError                 an archive or state directory cannot be used
    │   ├── NotAnArchiveError        the directory holds no archive identity
    │   ├── ArchiveExistsError       keygen refuses to overwrite
    │   ├── ArchiveLockedError       another writer holds the archive
    │   └── StateError               the sealing state is unreadable or inconsistent
    ├── SealLoopError                the daemon's seal loop died (the writer is unusable)
    ├── ForwardError                 a forwarding peer failed (the runner retries)
    ├── ControlError                 the running daemon could not be asked, or refused
    ├── FormatError                  bytes that do not follow docs/FORMAT.md (exit 1 in verify)
    └── IntegrityError               verification failed: tampering or loss (exit 1)
        └── ProofError               an inclusion proof does not check out

Only :mod:`auditd_py.cli` maps these to exit codes. Every error carries
:meth:`AuditdError.diagnostics`, a dict of *where* (file, line, seq, field) and
*what*, so that the CLI can print one precise line or a JSON report.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Failure(StrEnum):
    """What a verification found, the ``what`` of an IntegrityError (README's table).

    A ``str``: printed, compared and serialised as the code itself
    (``f"{Failure.BROKEN_LINK}"`` is ``broken_link``), as the codes always were.
    """

    MAC_MISMATCH = "mac_mismatch"
    BROKEN_LINK = "broken_link"
    GAP = "gap"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    WRONG_EPOCH = "wrong_epoch"
    MISSING_SEGMENT = "missing_segment"
    SEGMENT_SWAPPED = "segment_swapped"
    SEGMENT_HEADER = "segment_header"
    MISSING_CHECKPOINT = "missing_checkpoint"
    CHECKPOINT_ORDER = "checkpoint_order"
    BAD_SIGNATURE = "bad_signature"
    CHECKPOINT_LINK = "checkpoint_link"
    CHECKPOINT_RANGE = "checkpoint_range"
    CHECKPOINT_WINDOW = "checkpoint_window"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    ANCHOR_MISMATCH = "anchor_mismatch"
    TRUNCATED = "truncated"
    UNSEALED_TAIL = "unsealed_tail"
    IDENTITY = "identity"
    RETENTION = "retention"
    MISSING_GENESIS = "missing_genesis"
    STALE = "stale"
    FORMAT = "format"


class AuditdError(Exception):
    """Root of every error raised by auditd-py."""

    exit_code = 2

    def __init__(self, message: str, **where: Any) -> None:
        super().__init__(message)
        self.message = message
        self.where: dict[str, Any] = {k: v for k, v in where.items() if v is not None}

    def diagnostics(self) -> dict[str, Any]:
        """What went wrong and where, as plain data."""
        return {"error": type(self).__name__, "message": self.message, **self.where}

    def __str__(self) -> str:
        loc = []
        for key in ("file", "line", "seq", "epoch", "field"):
            if key in self.where:
                loc.append(f"{key} {self.where[key]}" if key != "file" else str(self.where[key]))
        prefix = ": ".join([", ".join(loc)]) if loc else ""
        return f"{prefix}: {self.message}" if prefix else self.message


class UsageError(AuditdError):
    """The command line or an option value is wrong."""


class ConfigError(AuditdError):
    """A configuration value is invalid."""


class KeyFileError(AuditdError):
    """A key file is missing, malformed, for another archive, or readable by others."""


class ArchiveError(AuditdError):
    """An archive or its state directory cannot be used."""


class NotAnArchiveError(ArchiveError):
    """The directory holds no archive identity file."""


class ArchiveExistsError(ArchiveError):
    """keygen found something it would overwrite."""


class ArchiveLockedError(ArchiveError):
    """Another process is sealing into this archive."""


class StateError(ArchiveError):
    """The sealing state is unreadable or does not match the archive."""


class DiskFullError(ArchiveError):
    """The archive's file system refused a write (ENOSPC/EDQUOT).

    Nothing sealed is lost by it: the writer keeps the sealed bytes it could not
    write and writes them, unchanged, when space returns.
    """


class FormatError(AuditdError):
    """Bytes that do not follow the archive format."""

    exit_code = 1


class IntegrityError(AuditdError):
    """Verification failed: the archive was modified, truncated or reordered."""

    exit_code = 1


class ProofError(IntegrityError):
    """An inclusion proof does not verify."""


class ForwardError(AuditdError):
    """A forwarding peer could not take (or acknowledge) what was sent; retried."""


class ControlError(AuditdError):
    """The daemon could not be asked over its control socket, or refused.

    ``reason`` says which (:mod:`auditd_py.control`: ``absent``, ``refused``,
    ``denied``, ``timeout``, ``rejected``).
    """

    def __init__(self, message: str, *, reason: str = "rejected", **where: Any) -> None:
        super().__init__(message, **where)
        self.reason = reason


class SealLoopError(AuditdError):
    """The seal loop died with an unexpected error; the daemon stops (exit 2)."""
