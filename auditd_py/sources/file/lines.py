"""Bytes read from a file into records: one per line, each ending at a position.

A last line without a newline is held (``Tracked.partial``) until completed or
sealed flagged ``partial``; a line longer than ``max_line_bytes`` is sealed in
pieces flagged ``split``, never dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

from auditd_py.record import Fields
from auditd_py.sources.file.fingerprint import TAIL
from auditd_py.sources.file.position import FilePosition
from auditd_py.sources.file.tracked import Tracked


def split(t: Tracked, data: bytes, batch: list[Fields], source: str, maxlen: int, now: int) -> int:
    """Append the lines of ``data`` (what follows ``t.off``) to ``batch``; returns their count."""
    lines = data.split(b"\n")
    rest = lines.pop()
    off = _whole_lines(t, lines, batch, source, maxlen, now)
    if batch and batch[-1].raw_attrs is not None and batch[-1].pos is None:
        batch[-1].pos = FilePosition(t.key, off, t.fp, t.fpn).to_pos()
    if lines:
        end = len(data) - len(rest)
        t.tail = data[end - TAIL : end] if end >= TAIL else (t.tail + data[:end])[-TAIL:]
    t.off = off
    while len(rest) > maxlen:  # a line longer than the limit with no newline yet
        piece, rest = rest[:maxlen], rest[maxlen:]
        t.off += len(piece)
        t.tail = (t.tail + piece)[-TAIL:]
        t.splitting = True
        pos = t.position(cut=True)
        batch.append(Fields(now, source, piece, None, {"path": t.path, "split": 1, "pos": pos}))
    if rest != t.partial:
        t.partial_since = 0.0 if not rest else t.partial_since
    t.partial = rest
    return len(lines)


def _whole_lines(
    t: Tracked, lines: list[bytes], batch: list[Fields], source: str, maxlen: int, now: int
) -> int:
    """Append a record per line (pieces for an over-long one); returns the offset after them."""
    off = t.off
    path, key, fp, fpn = t.path, t.key, t.fp, t.fpn
    append = batch.append
    # attrs as JSON from a per-file template: the same bytes orjson would write for
    # {"path": path, "pos": {"k": key, "off": off, "fp": fp, "fpn": fpn}}, but
    # without building two dicts per line. The position dict rides on the last one.
    head = b'{"path":' + orjson.dumps(path) + b',"pos":{"k":' + orjson.dumps(key) + b',"off":'
    tail = b',"fp":"%s","fpn":%d}}' % (fp.encode(), fpn)
    for line in lines:
        if not t.splitting and len(line) <= maxlen:
            off += len(line) + 1
            append(Fields(now, source, line, None, None, b"%b%d%b" % (head, off, tail)))
            continue
        if len(line) > maxlen:
            t.splitting = False
            for piece, end, last in pieces(line, maxlen, off):
                pos = FilePosition(key, end, fp, fpn, cut=not last).to_pos()
                append(Fields(now, source, piece, None, {"path": path, "split": 1, "pos": pos}))
            off += len(line) + 1
            continue
        off += len(line) + 1
        attrs: dict[str, Any] = {"path": path, "pos": FilePosition(key, off, fp, fpn).to_pos()}
        if t.splitting:
            attrs["split"] = 1
        t.splitting = False
        append(Fields(now, source, line, None, attrs))
    return off


def partial(t: Tracked, source: str, now: int) -> Fields:
    """Seal the held last line of ``t`` as it is (flagged ``partial``)."""
    t.off += len(t.partial)
    t.tail = (t.tail + t.partial)[-TAIL:]
    attrs = {"path": t.path, "partial": 1, "pos": t.position(cut=True)}
    if t.splitting:
        attrs["split"] = 1
        t.splitting = False
    f = Fields(now, source, t.partial, None, attrs)
    t.partial = b""
    t.partial_since = 0.0
    return f


def pieces(line: bytes, maxlen: int, start: int) -> list[tuple[bytes, int, bool]]:
    """Split an over-long line; each piece with the offset where it ends."""
    out = []
    off = start
    for i in range(0, len(line), maxlen):
        piece = line[i : i + maxlen]
        last = i + maxlen >= len(line)
        off += len(piece) + (1 if last else 0)
        out.append((piece, off, last))
    return out
