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
import zlib
from pathlib import Path
from typing import IO, Any, Final, cast

import zstandard

from auditd_py.errors import ArchiveError, Failure, IntegrityError

MAX_RECORD_BYTES: Final = 16 * 1024 * 1024
"""The longest record line the format allows, its newline included (FORMAT.md 3.1)."""
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
"""The longest ``archive.json`` or checkpoint file the format allows (FORMAT.md 3.1)."""

_CHUNK: Final = 1 << 20
_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

CORRUPT: tuple[type[BaseException], ...] = (
    zstandard.ZstdError,
    EOFError,
    gzip.BadGzipFile,
    zlib.error,
)
"""What reading a damaged compressed segment raises (mapped to a format failure by readers)."""


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


def decompressed(raw: IO[bytes], name: str, label: str) -> BoundedLines:
    """``raw`` (a segment named ``name``) decompressed by its suffix, strictly
    (:func:`decompressing`), as bounded lines."""
    if name.endswith((".zst", ".gz")):
        return BoundedLines(_decompressor(raw, name), label)
    return BoundedLines(raw, label)


def decompressing(raw: IO[bytes], name: str) -> IO[bytes]:
    """The decompressed stream of a compressed segment file ``name`` read from ``raw``.

    Strict (docs/FORMAT.md 11.4): a file of 0 bytes, or one that ends inside a zstd
    frame or a gzip member (a cut checksum included), raises ``EOFError`` (one of
    :data:`CORRUPT`) at its end instead of reading as a shorter segment.
    """
    return io.BufferedReader(_decompressor(raw, name), buffer_size=_CHUNK)


def _decompressor(raw: IO[bytes], name: str) -> Any:
    """The unbuffered strict decompressor of :func:`decompressing`."""
    src = _NotEmpty(raw, name)
    if name.endswith(".zst"):
        return _ZstdFrames(src, name)
    return gzip.GzipFile(fileobj=io.BufferedReader(src, _CHUNK), mode="rb")  # EOFError if cut


class _NotEmpty(io.RawIOBase):
    """The compressed bytes; none at all is a corrupt stream (one frame or member at least)."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw, self._name, self._seen = raw, name, False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)  # type: ignore[attr-defined]
        if not n and not self._seen:
            raise EOFError(
                f"{self._name} is empty: a compressed segment holds one frame or member at least"
            )
        self._seen = True
        return int(n or 0)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ZstdFrames(io.RawIOBase):
    """Every zstd frame of a stream, one after another; the stream must end between frames.

    ``zstandard``'s stream reader returns what it has when its input ends inside a
    frame (even before the frame's checksum); this one raises ``EOFError``. Input is
    fed in pieces of ``_IN`` bytes, whose output is bounded (a zstd block of at
    least 4 bytes yields at most 128 KiB: 32 MiB per piece, however hostile the
    file), until ``_OUT`` bytes are ready.
    """

    _IN = 1 << 10
    _OUT = 1 << 18

    def __init__(self, raw: io.RawIOBase, name: str) -> None:
        self._raw, self._name = raw, name
        self._dec: Any = None
        self._out = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._pos == len(self._out) and not self._done:
            self._out, self._pos = self._fill(), 0
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> bytes:
        """The output of the next pieces of input (possibly empty), frame by frame."""
        out: list[bytes] = []
        size = 0
        while size < self._OUT:
            data = self._raw.read(self._IN)
            if not data:
                if self._dec is not None:
                    raise EOFError(f"{self._name} ends inside a zstd frame (truncated)")
                self._done = True
                break
            while data:
                if self._dec is None:
                    self._dec = zstandard.ZstdDecompressor().decompressobj()
                out.append(self._dec.decompress(data))
                size += len(out[-1])
                data = b""
                if self._dec.eof:
                    data, self._dec = self._dec.unused_data, None
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()
