"""Append-only and immutable segment files (``chattr +a`` / ``chattr +i``), where possible.

The open segment is set append-only and a closed one immutable, so that a
process that may write the files but lacks ``CAP_LINUX_IMMUTABLE`` (another
service running as the same user, root in a container without the capability,
an operator's ``> file``, a misconfigured logrotate) cannot truncate, rewrite,
rename or delete sealed bytes. It is an extra: the flags are outside the
archive format, verification never looks at them, and a daemon that cannot set
them (no capability, a file system without inode flags) seals exactly as
before. docs/THREAT_MODEL.md says what the flags do and do not stop.

The flags are read and changed with ``FS_IOC_GETFLAGS`` / ``FS_IOC_SETFLAGS``
(read-modify-write: other flags such as ``FS_EXTENT_FL`` are kept), on a
descriptor opened ``O_RDONLY | O_NONBLOCK | O_NOFOLLOW``, which works on
append-only and immutable files alike.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from auditd_py.errors import ArchiveError

FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20

_LONG = struct.calcsize("l")  # the ioctl numbers say ``long``; the kernel reads an int
FS_IOC_GETFLAGS = (2 << 30) | (_LONG << 16) | (ord("f") << 8) | 1
FS_IOC_SETFLAGS = (1 << 30) | (_LONG << 16) | (ord("f") << 8) | 2
_INT = struct.Struct("i")

CAP_LINUX_IMMUTABLE = 9
PROBE_PREFIX = ".worm-probe-"
"""Scratch files of :func:`probe`; not segment names, so readers ignore them."""

_UNSUPPORTED = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class _Unsupported(Exception):
    """The file system has no inode flags (the ioctl failed with one of _UNSUPPORTED)."""


def _errname(code: int) -> str:
    if code == errno.EOPNOTSUPP:  # the same number as ENOTSUP on Linux; the usual name
        return "EOPNOTSUPP"
    return errno.errorcode.get(code, str(code))


def _get(fd: int) -> int:
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, _INT.pack(0))
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            raise _Unsupported(_errname(exc.errno)) from exc
        raise
    flags: int = _INT.unpack(buf)[0]
    return flags


def _set(fd: int, flags: int) -> None:
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, _INT.pack(flags))
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            raise _Unsupported(_errname(exc.errno)) from exc
        raise


def has_capability() -> bool:
    """Whether this process holds CAP_LINUX_IMMUTABLE in its effective set."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_LINUX_IMMUTABLE & 1)
    except (OSError, ValueError):
        pass
    return False


def _why_not(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        if has_capability():
            return f"setting inode flags is not permitted ({_errname(exc.errno)})"
        return "no CAP_LINUX_IMMUTABLE"
    return f"cannot set inode flags: {exc.strerror} ({_errname(exc.errno or 0)})"


def get_flags(path: Path) -> int | None:
    """The file's inode flags; None when the file system has none."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return _get(fd)
    except _Unsupported:
        return None
    finally:
        os.close(fd)


def _change(path: Path, add: int, remove: int, what: str, *, lenient: bool) -> None:
    """Read-modify-write the flags; ``lenient``: a missing file or no inode flags is fine."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        if lenient:
            return
        raise ArchiveError(f"cannot {what}: no such file", file=str(path)) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot {what}: {exc.strerror}", file=str(path)) from exc
    try:
        old = _get(fd)
        new = (old | add) & ~remove
        if new != old:
            _set(fd, new)
    except _Unsupported as exc:
        if lenient:
            return
        raise ArchiveError(
            f"cannot {what}: file system does not support inode flags ({exc})", file=str(path)
        ) from exc
    except OSError as exc:
        hint = "; as root: chattr -a -i FILE" if remove and exc.errno == errno.EPERM else ""
        raise ArchiveError(f"cannot {what}: {_why_not(exc)}{hint}", file=str(path)) from exc
    finally:
        os.close(fd)


def append_only(path: Path) -> None:
    """``chattr +a``: the file can only be opened for appending, not truncated or removed."""
    _change(path, FS_APPEND_FL, 0, "set the append-only flag", lenient=False)


def immutable(path: Path) -> None:
    """``chattr -a +i`` in one step: the file can no longer change at all."""
    _change(path, FS_IMMUTABLE_FL, FS_APPEND_FL, "set the immutable flag", lenient=False)


def release(path: Path) -> None:
    """``chattr -a -i``: before a file is truncated, replaced or deleted.

    A no-op when neither flag is set, when the file does not exist, or when its
    file system has no inode flags; an error only when a flag is set and cannot
    be cleared (without CAP_LINUX_IMMUTABLE).
    """
    _change(
        path,
        0,
        FS_APPEND_FL | FS_IMMUTABLE_FL,
        "clear the append-only/immutable flags",
        lenient=True,
    )


def release_tree(root: Path) -> int:
    """:func:`release` on everything below ``root`` (symlinks not followed); how many had flags.

    For deleting a whole archive that is no longer wanted (``make clean``, the
    demo starting over, test temp dirs); never used on a live archive.
    """
    cleared = 0
    if not root.is_dir() or root.is_symlink():
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            with contextlib.suppress(OSError, ArchiveError):
                if (get_flags(p) or 0) & (FS_APPEND_FL | FS_IMMUTABLE_FL):
                    release(p)
                    cleared += 1
    return cleared


def _remove_scratch(path: Path) -> None:
    with contextlib.suppress(ArchiveError, OSError):
        release(path)
    with contextlib.suppress(OSError):
        path.unlink()


def probe(directory: Path) -> str | None:
    """None if both flags can be set on files in ``directory``, else why not.

    Tries them on a scratch file (``.worm-probe-*``, removed again, also when
    left by an earlier crash). Never raises.
    """
    try:
        for stale in directory.glob(PROBE_PREFIX + "*"):
            _remove_scratch(stale)
    except OSError:
        pass
    scratch = directory / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        return f"cannot create a scratch file in {directory}: {exc.strerror}"
    try:
        fd = os.open(scratch, _OPEN_FLAGS)
        try:
            base = _get(fd)
            for flag in (FS_APPEND_FL, FS_IMMUTABLE_FL):
                _set(fd, base | flag)
                if not _get(fd) & flag:
                    return "file system does not keep inode flags"
            _set(fd, base)
        finally:
            os.close(fd)
    except _Unsupported as exc:
        return f"file system does not support inode flags ({exc})"
    except OSError as exc:
        return _why_not(exc)
    finally:
        _remove_scratch(scratch)
    return None


Mode = Literal["auto", "off"]


@dataclass(frozen=True, slots=True)
class Worm:
    """Whether the writer and the compressor set the flags (everything a no-op if not).

    :meth:`release` is attempted even when disabled: a file may still carry a
    flag set by an earlier run that had the capability.
    """

    enabled: bool = False
    reason: str | None = "not requested"
    """Why the flags are not set (None when enabled)."""

    @classmethod
    def detect(cls, directory: Path, mode: Mode = "auto") -> Worm:
        """``mode`` ``off``: disabled; ``auto``: enabled if :func:`probe` succeeds."""
        if mode == "off":
            return cls(False, "segments.immutable is off")
        why = probe(directory)
        return cls(why is None, why)

    def append_only(self, path: Path) -> None:
        if self.enabled:
            append_only(path)

    def immutable(self, path: Path) -> None:
        if self.enabled:
            immutable(path)

    def release(self, path: Path) -> None:
        release(path)


OFF = Worm()
"""The default of library and CLI writers: no flags are set."""
