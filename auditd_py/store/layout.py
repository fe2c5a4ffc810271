"""Where things live inside an archive directory, and small durable-write helpers."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from auditd_py.chain.format import SEGMENT_FILE
from auditd_py.errors import ArchiveError, KeyFileError, NotAnArchiveError
from auditd_py.store.bounded import read_document

IDENTITY = "archive.json"
SEGMENTS = "segments"
CHECKPOINTS = "checkpoints"
QUARANTINE = "quarantine"
DELETIONS = "deletions.jsonl"
"""Every ``retention.deleted`` record line ever sealed (docs/FORMAT.md 16.4)."""
DEFAULT_STATE = ".state"

COMPRESSED_SUFFIXES = (".zst", ".gz")
CHECKPOINT_RE = re.compile(r"cp-([0-9]{10})\.json")


DIR_MODE = 0o750
"""The archive's directories: the owner writes, its group reads, others nothing."""
FILE_MODE = 0o640
"""Segments, checkpoints and ``archive.json``: the owner writes, its group reads."""


def checkpoint_name(epoch: int) -> str:
    return f"cp-{epoch:010d}.json"


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path
    state: Path

    @classmethod
    def at(cls, archive: Path | str, state: Path | str | None = None) -> Layout:
        root = Path(archive)
        return cls(root, Path(state) if state is not None else root / DEFAULT_STATE)

    @property
    def identity(self) -> Path:
        return self.root / IDENTITY

    @property
    def segments(self) -> Path:
        return self.root / SEGMENTS

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE

    @property
    def deletions(self) -> Path:
        return self.root / DELETIONS

    def read_deletions(self) -> bytes:
        """``deletions.jsonl``, empty if retention never deleted a segment."""
        try:
            return self.deletions.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise ArchiveError(f"cannot read: {exc.strerror}", file=str(self.deletions)) from exc

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / checkpoint_name(epoch)

    def read_identity(self) -> bytes:
        try:
            return read_document(self.identity, str(self.identity))
        except FileNotFoundError as exc:
            raise NotAnArchiveError(
                "not an auditd-py archive (no archive.json)", file=str(self.root)
            ) from exc
        except PermissionError as exc:
            raise denied(self.identity) from exc
        except OSError as exc:
            raise ArchiveError(f"cannot read: {exc.strerror}", file=str(self.identity)) from exc

    def _list(self, directory: Path) -> list[str]:
        """The names in one of the archive's directories; one clear error if it cannot be."""
        try:
            return os.listdir(directory)
        except FileNotFoundError as exc:
            raise NotAnArchiveError(
                f"archive has no {directory.name}/ directory", file=str(self.root)
            ) from exc
        except PermissionError as exc:
            raise denied(directory) from exc

    def segment_names(self) -> list[str]:
        names = self._list(self.segments)
        return sorted({m["name"] for n in names if (m := SEGMENT_FILE.fullmatch(n))})

    def segment_files(self) -> list[tuple[str, Path]]:
        """(logical name, file) of every segment in order, plain or compressed.

        A segment appears once: when both its plain file and a compressed copy
        exist (a compression was interrupted), the plain file is the segment.
        """
        names = set(self._list(self.segments))
        out: dict[str, str] = {}
        for n in names:
            m = SEGMENT_FILE.fullmatch(n)
            if m is None:
                continue
            logical = m["name"]
            if logical in names:
                out[logical] = logical
            elif logical not in out or n.endswith(".zst"):
                out[logical] = n  # both .zst and .gz (never written so): either holds it
        return [(k, self.segments / out[k]) for k in sorted(out)]

    def segment_path(self, name: str) -> Path:
        """The file holding the segment ``name`` (its plain file if it exists)."""
        plain = self.segments / name
        if plain.exists():
            return plain
        for suffix in COMPRESSED_SUFFIXES:
            p = self.segments / (name + suffix)
            if p.exists():
                return p
        return plain

    def checkpoint_files(self) -> list[tuple[str, bytes]]:
        names = sorted(n for n in self._list(self.checkpoints) if CHECKPOINT_RE.fullmatch(n))
        out = []
        for n in names:
            try:
                rel = f"{CHECKPOINTS}/{n}"
                out.append((rel, read_document(self.checkpoints / n, rel)))
            except OSError as exc:
                raise ArchiveError(
                    f"cannot read: {exc.strerror}", file=f"{CHECKPOINTS}/{n}"
                ) from exc
        return out


def denied(path: Path) -> ArchiveError:
    """The one error of a user who may not read the archive."""
    return ArchiveError(
        "permission denied: this user may not read the archive "
        "(it is readable by its owner and group only: ask to be put in its group)",
        file=str(path),
    )


def secure_dirs(layout: Layout, gid: int | None = None) -> None:
    """The archive's directories to :data:`DIR_MODE` whatever the umask, owned by group
    ``gid`` if given, then setgid so that every file created in them has that group."""
    for d in (layout.root, layout.segments, layout.checkpoints, layout.quarantine):
        if not d.is_dir():
            continue
        try:
            if gid is not None:
                os.chown(d, -1, gid)
            os.chmod(d, DIR_MODE | (stat.S_ISGID if gid is not None else 0))
        except OSError as exc:
            raise ArchiveError(f"cannot set the mode: {exc.strerror}", file=str(d)) from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (``mode`` exactly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a write to a nearly full disk is short)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with exactly ``mode`` (refuses to overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def read_secret(path: Path) -> bytes:
    """Read a key file, refusing one that group or others can read or write."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError("key file not found", file=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file: {exc.strerror}", file=str(path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("key file is not a regular file", file=str(path))
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file permissions {stat.S_IMODE(st.st_mode):04o} are too open "
            "(group or others can access it); run: chmod 600 " + str(path),
            file=str(path),
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file: {exc.strerror}", file=str(path)) from exc


def read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError("key file not found", file=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file: {exc.strerror}", file=str(path)) from exc
