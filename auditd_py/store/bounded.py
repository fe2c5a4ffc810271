"""Reading archive files in bounded memory, and only regular files (docs/FORMAT.md 3.1).

A reader is handed archives it does not trust: a segment that inflates to
gigabytes without a newline, a file swapped for a FIFO or symlinked to
``/dev/zero``. Everything the readers open goes through here: a file is opened
without following a symlink, without blocking, and must be a regular file
(``fstat``); a record line longer than :data:`MAX_RECORD_BYTES` and a document
(``archive.json``, a checkpoint) longer than :data:`MAX_DOCUMENT_BYTES` are
format failures naming the file (and line), found after reading at most that
many bytes.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
from pathlib import Path
from typing import IO, Final, cast

import zstandard

from auditd_py.errors import ArchiveError, Failure, IntegrityError

MAX_RECORD_BYTES: Final = 16 * 1024 * 1024
"""The longest record line the format allows, its newline included (FORMAT.md 3.1)."""
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
"""The longest ``archive.json`` or checkpoint file the format allows (FORMAT.md 3.1)."""

_CHUNK: Final = 1 << 20
_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_regular(path: Path, label: str | None = None) -> int:
    """A descriptor on ``path`` if it is a regular file reached without a final symlink.

    Opened non-blocking, so that a FIFO put in its place cannot hang the open;
    then refused by ``fstat`` unless it is a regular file.
    """
    where = label or str(path)
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArchiveError(
                "is a symbolic link; archive files are read only as regular files", file=where
            ) from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ArchiveError(f"is not a regular file ({_kind(mode)}); refused", file=where)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a file"


def read_document(path: Path, label: str) -> bytes:
    """A small archive file (``archive.json``, a checkpoint), at most :data:`MAX_DOCUMENT_BYTES`."""
    with io.FileIO(open_regular(path, label), "rb", closefd=True) as fh:
        return read_capped(fh, label)


def read_capped(fh: IO[bytes] | io.RawIOBase, label: str) -> bytes:
    """At most :data:`MAX_DOCUMENT_BYTES` from ``fh``; more is a format failure."""
    parts: list[bytes] = []
    got = 0
    while got <= MAX_DOCUMENT_BYTES:
        data = fh.read(min(_CHUNK, MAX_DOCUMENT_BYTES + 1 - got))
        if not data:
            return b"".join(parts)
        parts.append(data)
        got += len(data)
    raise IntegrityError(
        f"longer than the format's maximum of {MAX_DOCUMENT_BYTES} bytes for this file",
        what=Failure.FORMAT,
        file=label,
    )


class BoundedLines(io.BufferedReader):
    """Lines of a stream, none longer than :data:`MAX_RECORD_BYTES`, counted for errors.

    Iterating (``for raw in fh``) and ``readline()`` read at most the maximum
    plus one byte of a line; a longer line raises a format failure naming the
    file and the line, so memory stays bounded whatever the stream inflates to.
    """

    def __init__(self, raw: io.RawIOBase | IO[bytes], label: str) -> None:
        super().__init__(raw, buffer_size=_CHUNK)  # type: ignore[arg-type]
        self.label = label
        self.line_no = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        cap = MAX_RECORD_BYTES if size is None or size < 0 else min(size, MAX_RECORD_BYTES)
        line = super().readline(cap + 1)
        if line:
            self.line_no += 1
        if len(line) > MAX_RECORD_BYTES:
            raise IntegrityError(
                f"record line longer than the format's maximum of {MAX_RECORD_BYTES} bytes",
                what=Failure.FORMAT,
                file=self.label,
                line=self.line_no,
            )
        return line


def open_lines(path: Path, label: str) -> BoundedLines:
    """A segment file (plain, ``.zst`` or ``.gz``) as bounded lines, decompressed as a stream."""
    raw = io.FileIO(open_regular(path, label), "rb", closefd=True)
    try:
        return decompressed(cast(IO[bytes], raw), path.name, label)
    except BaseException:
        raw.close()
        raise


def decompressed(
    raw: IO[bytes], name: str, label: str, *, across_frames: bool = False
) -> BoundedLines:
    """``raw`` (a segment named ``name``) decompressed by its suffix, as bounded lines.

    The same decompression as :func:`auditd_py.store.compress.open_segment`
    (keep them in step); ``across_frames`` as the bucket reader has it.
    """
    if name.endswith(".zst"):
        dec = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=across_frames, closefd=True
        )
        return BoundedLines(dec, label)
    if name.endswith(".gz"):
        return BoundedLines(gzip.GzipFile(fileobj=raw, mode="rb"), label)  # type: ignore[arg-type]
    return BoundedLines(raw, label)
