"""How ``show -o FORMAT`` renders a record (journalctl's output modes).

========== ===============================================================
short      ``Dec 04 10:00:05 host app[pid]: message`` (local time, or --utc)
short-iso  ``2026-12-04T10:00:05+00:00 host app[pid]: message``
short-precise  as short, with microseconds
short-unix ``1764842405.123456 host app[pid]: message``
cat        the message only
json       the stored record line, byte for byte (verifiable)
json-pretty  the record, indented
verbose    a header line, then every field as ``    NAME=value``
export     journald's export format: ``NAME=value`` lines, a blank line
           after each record; a value with a newline or invalid UTF-8 in
           the binary form (name, newline, 64-bit little-endian length, bytes)
raw        the original message bytes
========== ===============================================================

On a terminal (``escape=True``) nothing reaches it raw that a terminal would
act on: C0 and C1 control characters, DEL and the bidirectional overrides are
shown as ``\\xNN`` / ``\\uNNNN`` (in JSON as ``\\u00NN``, which is still JSON),
so a log line cannot move the cursor, retitle the window or hide text.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

from auditd_py.chain.encoding import record_bytes, split_line
from auditd_py.chain.format import NS
from auditd_py.errors import FormatError
from auditd_py.show.entry import Entry
from auditd_py.show.options import FORMATS

__all__ = ["FORMATS", "Style", "escape", "escape_json", "render"]

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _esc(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape(text: str) -> str:
    """``text`` with every character a terminal would act on written as an escape."""
    return _UNSAFE.sub(_esc, text)


def escape_json(text: str) -> str:
    """JSON text safe for a terminal (orjson already escapes C0 controls)."""
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


@dataclass(frozen=True, slots=True)
class Style:
    """How to render: the format, the zone for times, and whether for a terminal."""

    output: str = "short"
    tz: tzinfo | None = UTC
    """None: local time (each record with the offset of its own date)."""
    escape: bool = False
    show_seal: bool = False
    host: str | None = None
    """The archive's host: the host of records that do not name one."""


def _message(e: Entry) -> bytes:
    try:
        return record_bytes(e.obj)
    except FormatError:
        return str(e.obj.get("message", "")).encode()


def _datetime(t: int, s: Style) -> datetime:
    sec = t // NS
    return datetime.fromtimestamp(sec, s.tz) if s.tz else datetime.fromtimestamp(sec).astimezone()


def _when(e: Entry, s: Style) -> str:
    t = e.time_ns
    dt = _datetime(t, s)
    micro = (t % NS) // 1000
    if s.output == "short-iso":
        return dt.isoformat()
    if s.output == "short-unix":
        return f"{t // NS}.{micro:06d}"
    base = dt.strftime("%b %d %H:%M:%S")
    return f"{base}.{micro:06d}" if s.output == "short-precise" else base


def _seal(e: Entry) -> tuple[str, str]:
    try:
        _, link, mac = split_line(e.line)
    except FormatError:
        return "-", "-"
    return link.hex(), mac.hex()


def _text(b: bytes, s: Style) -> str:
    t = b.decode("utf-8", "backslashreplace")
    return escape(t) if s.escape else t


def render(e: Entry, s: Style) -> bytes:
    """One record in the style's format, ending with a newline."""
    out = s.output
    if out == "json":
        line = e.line.decode("utf-8", "backslashreplace")
        return (escape_json(line) if s.escape else line).encode() + b"\n"
    if out == "json-pretty":
        text = orjson.dumps(e.obj, option=orjson.OPT_INDENT_2).decode()
        return (escape_json(text) if s.escape else text).encode() + b"\n"
    if out in ("cat", "raw"):
        raw = _message(e)
        return (_text(raw, s).encode() if s.escape or out == "cat" else raw) + b"\n"
    if out == "verbose":
        return _verbose(e, s)
    if out == "export":
        return _export(e, s)
    pid = e.pid()
    ident = e.app() + (f"[{pid}]" if pid else "")
    event = e.obj.get("event")
    msg = _text(_message(e), s)
    if not msg and isinstance(event, str):
        msg = event
    host = e.host(s.host) or "-"
    line = f"{_when(e, s)} {_safe(host, s)} {_safe(ident, s)}: {msg}\n"
    if s.show_seal:
        link, mac = _seal(e)
        line += f"    seq={e.seq} epoch={e.obj.get('epoch')} link={link} mac={mac}\n"
    return line.encode()


def _safe(text: str, s: Style) -> str:
    return escape(text) if s.escape else text


def fields(e: Entry, s: Style) -> list[tuple[str, Any]]:
    """(NAME, value) of a record for ``verbose`` and ``export``, journald's names first."""
    out: list[tuple[str, Any]] = [
        ("__SEQ", e.seq),
        ("__EPOCH", e.obj.get("epoch")),
        ("__REALTIME_TIMESTAMP", e.time_ns // 1000),
        ("SOURCE", e.source),
    ]
    if isinstance(e.obj.get("event"), str):
        out.append(("EVENT", e.obj["event"]))
    out.append(("MESSAGE", _message(e)))
    named = (
        ("_HOSTNAME", e.host(s.host)),
        ("SYSLOG_IDENTIFIER", e.app()),
        ("_PID", e.pid()),
        ("_SYSTEMD_UNIT", e.unit()),
        ("PRIORITY", e.priority()),
    )
    out += [(k, v) for k, v in named if v is not None]
    have = {k for k, _ in out}
    for k, v in e.journal.items():
        if k not in have:
            out.append((k, v))
    for k, v in e.attrs.items():
        if k not in ("journal", "syslog"):
            out.append((f"ATTR_{k.upper()}", v))
    for k, v in e.syslog.items():
        out.append((f"SYSLOG_{k.upper()}", v))
    if s.show_seal:
        link, mac = _seal(e)
        out += [("__LINK", link), ("__MAC", mac)]
    return out


def _value(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return orjson.dumps(v)


def _verbose(e: Entry, s: Style) -> bytes:
    t = e.time_ns
    dt = _datetime(t, s)
    head = dt.strftime("%a %Y-%m-%d %H:%M:%S") + f".{t % NS:09d} {dt.tzname()}"
    lines = [f"{head} [seq={e.seq} segment={e.segment}]"]
    lines += [f"    {k}={_text(_value(v), s)}" for k, v in fields(e, s)]
    return ("\n".join(lines) + "\n").encode()


def _export(e: Entry, s: Style) -> bytes:
    out = bytearray()
    for k, v in fields(e, s):
        b = _value(v)
        if s.escape:
            out += f"{k}={_text(b, s)}\n".encode()
            continue
        try:
            printable = b"\n" not in b and b.decode("utf-8").isprintable()
        except UnicodeDecodeError:
            printable = False
        if printable:
            out += k.encode() + b"=" + b + b"\n"
        else:
            out += k.encode() + b"\n" + struct.pack("<Q", len(b)) + b + b"\n"
    return bytes(out + b"\n")
