"""The catalogue of the daemon's own events: names and severities, nothing else.

A leaf module (it imports nothing of the package), so that sources, forwarders
and the store can name the events they report without importing the meta-log,
the pipeline or the store. :mod:`auditd_py.metalog` logs and seals them.
Adding an event means adding it here.
"""

from __future__ import annotations

from typing import Final, Literal

DAEMON_STARTED: Final = "daemon.started"
DAEMON_READY: Final = "daemon.ready"
DAEMON_STOPPING: Final = "daemon.stopping"
DAEMON_STOPPED: Final = "daemon.stopped"
CONFIG_LOADED: Final = "config.loaded"
CONFIG_REJECTED: Final = "config.rejected"
SOURCE_ADDED: Final = "source.added"
SOURCE_REMOVED: Final = "source.removed"
SOURCE_ERROR: Final = "source.error"
SOURCE_RESTARTED: Final = "source.restarted"
FILE_OPENED: Final = "file.opened"
FILE_RESUMED: Final = "file.resumed"
FILE_ROTATED: Final = "file.rotated"
FILE_TRUNCATED: Final = "file.truncated"
FILE_RELEASED: Final = "file.released"
FILE_UNREADABLE: Final = "file.unreadable"
FILE_POSITION_INVALID: Final = "file.position_invalid"
FILE_DUPLICATE: Final = "file.duplicate"
JOURNAL_CURSOR_LOST: Final = "journal.cursor_lost"
SYSLOG_PARSE_ERROR: Final = "syslog.parse_error"
SYSLOG_LIMIT: Final = "syslog.limit"
SYSLOG_DROPPED: Final = "syslog.dropped"
SYSLOG_TLS_ERROR: Final = "syslog.tls_error"
EPOCH_ADVANCED: Final = "epoch.advanced"
CHECKPOINT_WRITTEN: Final = "checkpoint.written"
SEGMENT_ROTATED: Final = "segment.rotated"
SEGMENT_COMPRESSED: Final = "segment.compressed"
RETENTION_DELETED: Final = "retention.deleted"
RETENTION_BLOCKED: Final = "retention.blocked"
DISK_SPACE_LEFT: Final = "disk.space_left"
DISK_ADMIN_SPACE_LEFT: Final = "disk.admin_space_left"
DISK_FULL: Final = "disk.full"
DISK_OK: Final = "disk.ok"
DISK_ACTION: Final = "disk.action"
FORWARD_STARTED: Final = "forward.started"
FORWARD_FAILED: Final = "forward.failed"
FORWARD_RECOVERED: Final = "forward.recovered"
FORWARD_GAP: Final = "forward.gap"
FORWARD_CONFLICT: Final = "forward.conflict"
WORM_ENABLED: Final = "worm.enabled"
WORM_UNAVAILABLE: Final = "worm.unavailable"
WORM_DISABLED: Final = "worm.disabled"
SEALER_STALLED: Final = "sealer.stalled"
SEALER_RESUMED: Final = "sealer.resumed"
METRICS_LISTENING: Final = "metrics.listening"
CONTROL_LISTENING: Final = "control.listening"
CONTROL_ROTATE: Final = "control.rotate"
CONTROL_ERROR: Final = "control.error"
ARCHIVE_READ: Final = "archive.read"
CLOCK_JUMP: Final = "clock.jump"
VERIFY_PASSED: Final = "verify.passed"
VERIFY_FAILED: Final = "verify.failed"
ERROR: Final = "daemon.error"

CATALOGUE: Final = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "." in v
)


WARNINGS: Final = frozenset(
    {
        FILE_TRUNCATED,
        FILE_UNREADABLE,
        FILE_POSITION_INVALID,
        FILE_DUPLICATE,
        JOURNAL_CURSOR_LOST,
        SYSLOG_PARSE_ERROR,
        SYSLOG_LIMIT,
        SYSLOG_DROPPED,
        SYSLOG_TLS_ERROR,
        CONFIG_REJECTED,
        SOURCE_ERROR,
        CLOCK_JUMP,
        SEALER_RESUMED,
        CONTROL_ERROR,
        RETENTION_BLOCKED,
        DISK_SPACE_LEFT,
        FORWARD_FAILED,
    }
)
ERRORS: Final = frozenset(
    {
        ERROR,
        SEALER_STALLED,
        DISK_ADMIN_SPACE_LEFT,
        DISK_FULL,
        FORWARD_GAP,
        FORWARD_CONFLICT,
        VERIFY_FAILED,
    }
)


Severity = Literal["info", "warning", "error"]


def severity(name: str) -> Severity:
    """How bad an event is: its log level on stderr and its journald priority."""
    return "warning" if name in WARNINGS else "error" if name in ERRORS else "info"
