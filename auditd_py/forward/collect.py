"""Rebuilding archives from a syslog collector's files, to verify them off the host.

A collector (rsyslog, syslog-ng) writes what :mod:`auditd_py.forward.syslog`
sent: one line per message. Each line needs the structured-data element
``[auditd@32473 …]`` and, after it and one space, the MSG (rsyslog:
``template(type="string" string="%structured-data% %msg%\\n")``, or a full
RFC 5424 line such as ``RSYSLOG_SyslogProtocol23Format``). Lines without the
element are ignored (other hosts' logs).

:func:`collect` groups the messages by archive id, drops duplicates (the same
seq twice with the same bytes: at-least-once delivery), refuses conflicting
copies (the same seq with different bytes), and writes for each archive an
archive directory, ``OUT/<archive id>/``, with ``archive.json``, the
checkpoints and the segments split at their header records: exactly the layout
``auditd-py verify`` reads. A record the collector never got is simply
missing, and ``verify`` says where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from auditd_py.chain.encoding import scan_int
from auditd_py.chain.format import SEGMENT_NAME, segment_name
from auditd_py.errors import ArchiveError, FormatError
from auditd_py.store.layout import Layout, checkpoint_name, write_atomic

_SD = re.compile(rb"\[auditd@32473((?: [a-z_]+=\"(?:[^\"\\\]]|\\.)*\")*)\] ")
_PARAM = re.compile(rb' ([a-z_]+)="((?:[^"\\\]]|\\.)*)"')
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Collected:
    """One archive's messages as the collector holds them."""

    archive: str
    identity: bytes | None = None
    records: dict[int, bytes] = field(default_factory=dict)
    checkpoints: dict[int, bytes] = field(default_factory=dict)
    duplicates: int = 0


def _unescape(v: bytes) -> str:
    return re.sub(rb"\\(.)", rb"\1", v).decode("utf-8", "replace")


def parse(lines: Iterable[tuple[str, int, bytes]]) -> dict[str, Collected]:
    """(file, line number, line) → archives. Raises FormatError on conflicting copies."""
    out: dict[str, Collected] = {}
    for file, no, raw in lines:
        line = raw.rstrip(b"\r\n")
        m = _SD.search(line)
        if m is None:
            continue
        params = {k.decode(): _unescape(v) for k, v in _PARAM.findall(m.group(1))}
        arc, kind = params.get("archive", ""), params.get("kind")
        if not _UUID.fullmatch(arc):
            raise FormatError(f"bad archive id {arc!r}", file=file, line=no, field="archive")
        msg = line[m.end() :]
        c = out.setdefault(arc, Collected(arc))
        if kind == "identity":
            _put_one(c, "identity", msg, file, no)
        elif kind == "record":
            seq = scan_int(msg[:48], b"seq")
            if seq is None:
                raise FormatError("record without a seq", file=file, line=no, field="msg")
            _put(c.records, seq, msg, c, file, no, "seq")
        elif kind == "checkpoint":
            epoch = scan_int(msg, b"epoch")
            if epoch is None:
                raise FormatError("checkpoint without an epoch", file=file, line=no, field="msg")
            _put(c.checkpoints, epoch, msg, c, file, no, "epoch")
    return out


def _put_one(c: Collected, what: str, msg: bytes, file: str, no: int) -> None:
    if c.identity is not None and c.identity != msg:
        raise FormatError(
            f"two different identities for archive {c.archive}", file=file, line=no, field=what
        )
    if c.identity is not None:
        c.duplicates += 1
    c.identity = msg


def _put(
    d: dict[int, bytes], key: int, msg: bytes, c: Collected, file: str, no: int, what: str
) -> None:
    old = d.get(key)
    if old is None:
        d[key] = msg
    elif old == msg:
        c.duplicates += 1  # at-least-once: the same message again
    else:
        raise FormatError(
            f"archive {c.archive}: two different messages for {what} {key}: "
            "the host sent a rewritten copy",
            file=file,
            line=no,
            field=what,
        )


def write(c: Collected, out: Path) -> Path:
    """Lay one collected archive out as an archive directory; returns it."""
    if c.identity is None:
        raise ArchiveError(f"the collector has no identity (archive.json) of archive {c.archive}")
    root = out / c.archive
    layout = Layout.at(root)
    for d in (layout.segments, layout.checkpoints, layout.quarantine):
        d.mkdir(parents=True, exist_ok=True)
    for old in layout.segments.iterdir():
        old.unlink()
    for old in layout.checkpoints.iterdir():
        old.unlink()
    write_atomic(layout.identity, c.identity + b"\n")
    for epoch, line in sorted(c.checkpoints.items()):
        write_atomic(layout.checkpoints / checkpoint_name(epoch), line + b"\n")
    fh = None
    try:
        for seq in sorted(c.records):
            line = c.records[seq]
            name = _segment_of(line, seq) if b'"segment.opened"' in line else None
            if name is not None:
                if fh is not None:
                    fh.close()
                fh = open(layout.segments / name, "xb")  # noqa: SIM115 - closed below
            if fh is None:
                name = segment_name(0)  # records before any header: verify reports it
                fh = open(layout.segments / name, "xb")  # noqa: SIM115
            fh.write(line + b"\n")
    finally:
        if fh is not None:
            fh.close()
    return root


def _segment_of(line: bytes, seq: int) -> str | None:
    """The segment a header record opens; None for any other record."""
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # not JSON: verify reports it where it lies
    if not isinstance(body, dict):
        raise FormatError("record is not a JSON object", seq=seq, field="msg")
    if body.get("source") != "auditd-py" or body.get("event") != "segment.opened":
        return None
    attrs = body.get("attrs")
    name = attrs.get("segment") if isinstance(attrs, dict) else None
    if not isinstance(name, str) or not SEGMENT_NAME.fullmatch(name):
        raise FormatError(f"bad segment name {name!r} in a header", seq=seq, field="attrs.segment")
    return name


def collect(files: Iterable[Path], out: Path) -> dict[str, Collected]:
    """Parse the collector's files and write one archive directory per archive id."""

    def lines() -> Iterable[tuple[str, int, bytes]]:
        for f in files:
            try:
                with open(f, "rb") as fh:
                    for no, raw in enumerate(fh, 1):
                        yield str(f), no, raw
            except OSError as exc:
                raise ArchiveError(f"cannot read: {exc.strerror}", file=str(f)) from exc

    got = parse(lines())
    for c in got.values():
        write(c, out)
    return got
