"""Compressed segments: streaming reads, crash-safe compression, and its thread.

A closed segment ``seg-N.jsonl`` may be replaced by ``seg-N.jsonl.zst`` (zstd)
or ``seg-N.jsonl.gz`` (gzip). The steps (docs/FORMAT.md, "Compressed
segments"): compress to ``.seg-N.jsonl.zst.tmp``, fsync it, rename it to its
final name, fsync the directory, then unlink the plain file and fsync the
directory again. A crash at any point leaves the plain file, the compressed
one, or both; never neither. When both exist the plain file is the segment
and the compressed one is removed and redone (:func:`finish_pending`).

The chain is over the records, not over the file's bytes: readers decompress
as a stream (never a whole segment in memory) and see the same lines.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import zstandard

from auditd_py.chain.format import SEGMENT_NAME
from auditd_py.store.bounded import decompressing
from auditd_py.store.immutable import OFF, Worm
from auditd_py.store.layout import FILE_MODE, Layout, fsync_dir

Method = Literal["zstd", "gzip", "none"]
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
_CHUNK = 1 << 20
ZSTD_LEVEL = 3
GZIP_LEVEL = 6


class Aborted(Exception):
    """A compression stopped before it finished (the plain file is untouched)."""


def open_segment(path: Path) -> IO[bytes]:
    """A segment file opened for reading its lines, decompressing as a stream."""
    name = path.name
    if name.endswith((".zst", ".gz")):
        raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
        try:
            return decompressing(raw, name)
        except BaseException:
            raw.close()
            raise
    return open(path, "rb", buffering=_CHUNK)


def is_compressed(path: Path) -> bool:
    return path.name.endswith((".zst", ".gz"))


@dataclass(frozen=True, slots=True)
class Compressed:
    segment: str
    file: str
    method: str
    plain_bytes: int
    compressed_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.compressed_bytes / self.plain_bytes if self.plain_bytes else 1.0


def _write_compressed(
    src: Path,
    tmp: Path,
    method: Method,
    stop: threading.Event | None,
    held: contextlib.AbstractContextManager[object],
) -> int:
    """Compress ``src`` into ``tmp`` and fsync it (under ``held``); the plain bytes read.

    The temp file is removed if anything fails or ``stop`` is set (:class:`Aborted`).
    """
    plain = 0
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        try:
            os.fchmod(fout.fileno(), FILE_MODE)  # as the plain segment, whatever the umask
            out: zstandard.ZstdCompressionWriter | gzip.GzipFile
            if method == "zstd":
                cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
                out = cctx.stream_writer(fout, closefd=False)
            else:
                out = gzip.GzipFile(
                    filename="", mode="wb", fileobj=fout, compresslevel=GZIP_LEVEL, mtime=0
                )
            with out:
                while chunk := fin.read(_CHUNK):
                    if stop is not None and stop.is_set():
                        raise Aborted(src.name)
                    out.write(chunk)
                    plain += len(chunk)
            with held:
                fout.flush()
                os.fsync(fout.fileno())
        except BaseException:
            fout.close()
            tmp.unlink(missing_ok=True)
            raise
    return plain


def compress_segment(
    layout: Layout,
    name: str,
    method: Method,
    *,
    stop: threading.Event | None = None,
    crash_after: str | None = None,
    worm: Worm = OFF,
    gate: contextlib.AbstractContextManager[object] | None = None,
) -> Compressed:
    """Replace the closed plain segment ``name`` by its compressed copy.

    ``crash_after`` (tests only) stops right after the named step as a crash
    would: ``"tmp"`` (temp file written), ``"rename"`` (both files exist).
    ``gate`` is held around each step that makes the device work (fsync, rename,
    unlink: freeing the plain file's blocks can mean a long discard), so that
    none of them falls inside a segment rotation (``daemon.sealloop.SealLoop.io_gate``).
    """
    if method == "none":
        raise ValueError("compression method 'none' compresses nothing")
    t0 = time.monotonic()
    seg_dir = layout.segments
    src = seg_dir / name
    final = seg_dir / (name + SUFFIX[method])
    tmp = seg_dir / f".{final.name}.tmp"
    held = gate if gate is not None else contextlib.nullcontext()
    plain = _write_compressed(src, tmp, method, stop, held)
    if crash_after == "tmp":
        return Compressed(name, tmp.name, method, plain, tmp.stat().st_size, 0.0)
    with held:
        os.rename(tmp, final)
        fsync_dir(seg_dir)
        worm.immutable(final)  # chattr +i, as the plain file had
    size = final.stat().st_size
    if crash_after == "rename":
        return Compressed(name, final.name, method, plain, size, 0.0)
    with held:
        worm.release(src)  # chattr -i, or it cannot be unlinked
        src.unlink()
        fsync_dir(seg_dir)
    return Compressed(name, final.name, method, plain, size, time.monotonic() - t0)


def finish_pending(layout: Layout, open_segment_name: str | None, worm: Worm = OFF) -> list[str]:
    """Clean up after interrupted compressions; return the plain closed segments.

    Temp files are removed; a compressed copy next to its plain file is removed
    (the plain file wins; the compression is redone). The result lists every
    plain segment other than ``open_segment_name``, oldest first: those still
    to compress. A crash may have left the compressed copy immutable (its flag
    is cleared first) or the plain file without its flag (``worm`` sets it).
    """
    seg_dir = layout.segments
    names = set(os.listdir(seg_dir))
    removed = False
    for n in sorted(names):
        if n.startswith(".seg-") and n.endswith(".tmp"):
            (seg_dir / n).unlink(missing_ok=True)
            removed = True
        elif n.endswith((".zst", ".gz")):
            plain = n.rsplit(".", 1)[0]
            if plain in names and SEGMENT_NAME.fullmatch(plain):
                worm.release(seg_dir / n)
                (seg_dir / n).unlink(missing_ok=True)
                removed = True
    if removed:
        fsync_dir(seg_dir)
    closed = sorted(n for n in names if SEGMENT_NAME.fullmatch(n) and n != open_segment_name)
    for n in closed:
        worm.immutable(seg_dir / n)
    return closed


class Compressor:
    """One background thread compressing closed segments, one at a time."""

    def __init__(
        self,
        layout: Layout,
        method: Method,
        on_done: Callable[[Compressed], None],
        on_error: Callable[[str, BaseException], None],
        worm: Worm = OFF,
        gate: contextlib.AbstractContextManager[object] | None = None,
    ) -> None:
        self.layout = layout
        self.method = method
        self.worm = worm
        self.gate = gate
        """Held around each fsync, rename and unlink (see :func:`compress_segment`)."""
        self.on_done = on_done
        self.on_error = on_error
        self._q: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditd-compress", daemon=True)
        self.done = 0
        self.pending: set[str] = set()
        self._current: str | None = None
        self._dropped: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def submit(self, name: str) -> None:
        with self._lock:
            if name in self.pending:
                return
            self.pending.add(name)
        self._q.put(name)

    def idle(self) -> bool:
        with self._lock:
            return not self.pending

    def release(self, name: str) -> bool:
        """Give up ``name`` for retention: False while it is being compressed; else it is
        never compressed (a queued segment is not worth compressing to delete it)."""
        with self._lock:
            if name == self._current:
                return False
            if name in self.pending:
                self._dropped.add(name)
                self.pending.discard(name)
            return True

    def _take(self, name: str) -> bool:
        with self._lock:
            if name in self._dropped:
                self._dropped.discard(name)
                return False
            self._current = name
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            name = self._q.get()
            if name is None:
                break
            if not self._take(name):
                continue
            try:
                if (self.layout.segments / name).exists():
                    res = compress_segment(
                        self.layout,
                        name,
                        self.method,
                        stop=self._stop,
                        worm=self.worm,
                        gate=self.gate,
                    )
                    self.done += 1
                    self.on_done(res)
            except Aborted:
                break
            except BaseException as exc:  # reported; the plain file stays and is read as is
                self.on_error(name, exc)
            finally:
                with self._lock:
                    self.pending.discard(name)
                    self._current = None

    def stop(self, timeout: float = 30.0) -> None:
        """Abandon what is queued; a compression under way stops at its next chunk."""
        self._stop.set()
        self._q.put(None)
        self._thread.join(timeout)
