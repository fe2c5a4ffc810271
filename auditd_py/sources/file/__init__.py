"""Tailing plain files: globs, rotation, truncation, restarts, never a line twice.

A file is known by its identity, ``(device, inode)``, plus a fingerprint of its
first bytes, never by its path: a path is only where the file was last seen.
Each record carries ``attrs.pos`` = ``{k, off, fp, fpn}`` (``off``: the byte
offset where the record ends; ``fp``: BLAKE2b-64 of the first ``fpn`` bytes),
so the sealed archive says exactly how far every file was read.

On start, each sealed position is matched to a file with the same identity
(under the globs, or renamed next to its last path by a rotation while we were
stopped); the fingerprint and the bytes just before the offset must match the
sealed record, or the file is a different one that reused the inode and is
read from the start. Live:

* rename + create: the old file keeps being read through its open descriptor
  until it has been idle for ``rotate_wait``, then let go; the new file is
  read from 0;
* copytruncate: a size below the offset, or first or last bytes that changed,
  mean truncation: reading restarts at 0 and the event is sealed; if the
  rotated copy matches the globs it is recognised by its fingerprint and read
  from where the original stopped, which recovers the lines written between
  our last read and the truncation (a copy shorter than that holds nothing
  new: it was taken before we read further). The copy's decision is queued
  before any line of the truncated file, and a restart treats a sealed
  position whose file was truncated the same way (see :class:`.origins.Origin`), so a
  kill -9 at any point neither loses nor repeats the copy. One case cannot be
  decided: a copy shorter than ``fingerprint_bytes`` that ends before the 32
  bytes preceding its original's sealed offset (the original was read past the
  copy's end, and the daemon killed before deciding). It is read from 0 (nothing
  is lost) and a ``file.duplicate`` event says how many lines may be repeated;
* a last line without a newline is held until completed, or sealed flagged
  ``partial`` after ``partial_line_timeout``; a line longer than
  ``max_line_bytes`` is sealed in pieces flagged ``split``, never dropped.

watchdog (inotify) wakes the tailer early; polling every ``poll_interval`` is
the fallback and the guarantee.

The package follows the data flow: :mod:`.discovery` (globs, directory listings,
watching, which source claims which file), :mod:`.fingerprint` (what identifies
content), :mod:`.position` (the sealed, versioned position), :mod:`.resume`
(sealed positions at start), :mod:`.rotation` (pure decisions: same file,
truncated, rewritten, a copy), :mod:`.origins` and :mod:`.copies` (finding a
rotated copy), :mod:`.lines` (bytes into records), :mod:`.scanner` (opening
files) and :mod:`.tailer` (the thread that reads them).
"""

from auditd_py.sources.file.discovery import _claims
from auditd_py.sources.file.position import FilePosition
from auditd_py.sources.file.tailer import FileTailer

__all__ = ["FilePosition", "FileTailer", "_claims"]
