"""Syslog parsing and stream framing: pure functions and state machines, no I/O.

* :func:`parse_syslog` parses one frame as RFC 5424 or RFC 3164 (the BSD format,
  including what glibc's ``syslog()``, util-linux ``logger`` and rsyslog's
  forwarding templates emit), leniently the way RFC 3164 section 4.3 asks of a
  relay: what it infers or accepts outside the RFCs is flagged in the result
  (``pri_inferred``, ``timestamp_lenient``, ``sd_invalid``, …; docs/SYSLOG.md).
  It never raises: a frame that does not parse comes back with a reason.
* :class:`Framer` splits a TCP/TLS/unix-stream byte stream into frames: RFC
  6587 octet counting detected per frame, the trailer (LF, CRLF or NUL) per
  connection, or as configured (``framing``). It never loses a byte: oversize
  frames are cut into a first record plus continuations (an octet-counted one
  consumed exactly), a frame left unfinished while the sender is idle is
  sealed ``partial``, and a frame cut off by the end of the stream comes out
  flagged ``truncated``.
* :func:`frame_fields` turns a frame into the :class:`~auditd_py.record.Fields`
  that gets sealed.

Lossless rule: every record but a continuation carries its whole frame in
``attrs["raw"]`` (valid UTF-8) or ``attrs["raw_b64"]`` (base64); its ``message``
is the parsed MSG part, or the frame itself when it did not parse. A
continuation record (``attrs["continuation"]``) is a raw slice of an oversize
or partial frame: its ``message`` is the slice, not repeated in ``attrs``. The
first record of an oversize frame carries ``attrs["oversize"]`` (the frame's
length, or with ``oversize_at_least`` a lower bound) and its own slice as
``raw``, as does a ``partial`` one; concatenating ``raw`` with the following
continuations of the same connection gives the frame back.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from auditd_py.errors import ConfigError
from auditd_py.record import Fields

TRANSPORTS: Final = ("udp", "tcp", "tls", "unix", "unix-stream")
STREAM_TRANSPORTS: Final = frozenset({"tcp", "tls", "unix-stream"})

# ---------------------------------------------------------------- listen addresses


@dataclass(frozen=True, slots=True)
class ListenAddress:
    transport: str
    host: str = ""
    port: int = 0
    path: str = ""

    def url(self) -> str:
        if self.path:
            return f"{self.transport}://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


_INET = re.compile(r"(?:\[([0-9A-Fa-f:.%a-zA-Z]+)\]|([^:\[\]/]+)):([0-9]{1,5})")


def parse_listen_url(url: str) -> ListenAddress:
    """``udp://HOST:PORT``, ``tcp://…``, ``tls://…``, ``unix:///PATH``, ``unix-stream:///PATH``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in TRANSPORTS:
        raise ConfigError(f"invalid syslog listen address {url!r}", field="listen")
    if scheme in ("unix", "unix-stream"):
        if not rest.startswith("/") or "\x00" in rest:
            raise ConfigError(
                f"invalid syslog listen address {url!r}: use {scheme}:///ABSOLUTE/PATH",
                field="listen",
            )
        return ListenAddress(scheme, path=rest)
    m = _INET.fullmatch(rest)
    if not m or int(m.group(3)) > 65535:
        raise ConfigError(
            f"invalid syslog listen address {url!r}: use {scheme}://HOST:PORT", field="listen"
        )
    return ListenAddress(scheme, host=m.group(1) or m.group(2), port=int(m.group(3)))


# ---------------------------------------------------------------- message parsing


class Parsed(NamedTuple):
    message: bytes
    """The MSG part (RFC 5424 MSG without BOM, RFC 3164 content), or the whole
    frame when it did not parse."""
    syslog: dict[str, Any] | None
    error: str | None = None


_PRI: Final = re.compile(rb"<([0-9]{1,3})>")
_VERSION: Final = re.compile(rb"[1-9][0-9]{0,2} ")
_TS5424: Final = (
    rb"(?:-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    rb"(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2}))"
)
_HDR5424: Final = re.compile(
    rb"([1-9][0-9]{0,2}) (" + _TS5424 + rb") ([!-~]+) ([!-~]+) ([!-~]+) ([!-~]+) "
)
_TS5424_ONLY: Final = re.compile(_TS5424)
_PRINTUSASCII: Final = re.compile(rb"[!-~]+")
_SDNAME: Final = re.compile(rb"[!#-<>-\\^-~]+")  # PRINTUSASCII except '=', ']', '"' (and SP)
_SDVALUE: Final = re.compile(rb'[^"\\]*')
_BOM: Final = b"\xef\xbb\xbf"

_MONTHS = b"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_TS3339: Final = (
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    rb"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# RFC 3164 section 4.1.2 exactly: "Mmm dd hh:mm:ss", the day space-padded
_TS3164: Final = re.compile(
    rb"(?:" + _MONTHS + rb") (?: [1-9]|[12][0-9]|3[01]) [0-2][0-9]:[0-5][0-9]:[0-6][0-9](?: |$)"
)
# What senders in the field put there instead (docs/SYSLOG.md, "Timestamps"):
# spaces before it, any case, a one-space or zero-padded day, a year after the
# day, fractions of a second, a zone name and a colon after the time (Cisco
# IOS), or RFC 3339.
_TS_LENIENT: Final = re.compile(
    rb" *((?:(?i:" + _MONTHS + rb") {1,2}(?:[1-9]|[12][0-9]|3[01]|0[1-9])(?: [0-9]{4})? "
    rb"[0-2][0-9]:[0-5][0-9]:[0-6][0-9](?:\.[0-9]{1,9})?(?: [A-Z]{3,5}(?=:))?"
    rb"|" + _TS3339 + rb")):?(?: |$)"
)
# a timestamp we do not know: starts with a digit or a month or day name and
# ends in a time of day (then maybe a zone, a year), within 64 bytes (docs/SYSLOG.md, "Timestamps")
_TS_UNKNOWN: Final = re.compile(
    rb" *((?:[0-9]|(?i:" + _MONTHS + rb"|Mon|Tue|Wed|Thu|Fri|Sat|Sun))"
    rb"(?:[0-9A-Za-z/.,+-]* +){0,3}[0-9A-Za-z/.,+-]*?[0-2]?[0-9]:[0-5][0-9]:[0-6][0-9]"
    rb"(?:[.,][0-9]{1,9})?(?: ?(?:[A-Z]{3,5}|[Zz]|[+-][0-9]{2}:?[0-9]{2}))?(?: [0-9]{4})?)"
    rb":?(?: |$)"
)
# TAG[PID]: — printable ASCII except ':', '[' and ']'
_TAG: Final = re.compile(rb"([!-9;-Z\\^-~]{1,128}?)(?:\[([!-Z\\^-~]{0,128})\])?:(?: |$)")
# RFC 3164 section 4.1.3: at most 32 alphanumerics, ended by the first other
# character; taken without a colon only when a [PID] ends it (rsyslog's
# %syslogtag:1:32% cuts the colon off a long TAG[PID]:)
_TAG_NO_COLON: Final = re.compile(rb"([0-9A-Za-z_./-]{1,32})\[([0-9]{1,10})\](?: |$)")
_IS_TAG: Final = re.compile(_TAG.pattern + b"|" + _TAG_NO_COLON.pattern)
"""Whether a TAG (with or without its colon) starts here."""
_HOST3164: Final = re.compile(rb"([!-~]{1,255})(?: |$)")


class _SDError(ValueError):
    pass


_FAST5424: Final = re.compile(rb"<([0-9]{1,3})>" + _HDR5424.pattern)
_SD_ELEM: Final = re.compile(rb'\[([!#-<>-\\^-~]+)((?: [!#-<>-\\^-~]+="[^"\\]*")*)\]')
_SD_PARAM: Final = re.compile(rb' ([!#-<>-\\^-~]+)="([^"\\]*)"')


def _strip_end(msg: bytes) -> bytes:
    """One trailing terminator (LF, CRLF or NUL) is framing, not content."""
    if msg.endswith(b"\n"):
        return msg[:-2] if msg.endswith(b"\r\n") else msg[:-1]
    if msg.endswith(b"\x00"):
        return msg[:-1]
    return msg


def _add_param(params: dict[str, Any], name: str, value: str) -> None:
    old = params.get(name)
    if old is None:
        params[name] = value
    elif isinstance(old, list):
        old.append(value)
    else:
        params[name] = [old, value]


def _parse_sd_element(b: bytes, i: int, sd: dict[str, dict[str, Any]]) -> int:
    """One SD-ELEMENT at ``b[i] == '['``, with escapes; returns the index after it."""
    n = len(b)
    m = _SDNAME.match(b, i + 1)
    if m is None:
        raise _SDError("structured data: bad SD-ID")
    params = sd.setdefault(m.group().decode("ascii"), {})
    i = m.end()
    while True:
        if i >= n:
            raise _SDError("structured data: unterminated element")
        c = b[i]
        if c == 0x5D:  # ']'
            return i + 1
        if c != 0x20:
            raise _SDError("structured data: expected SP or ']'")
        m = _SDNAME.match(b, i + 1)
        if m is None:
            raise _SDError("structured data: bad PARAM-NAME")
        name = m.group().decode("ascii")
        i = m.end()
        if b[i : i + 2] != b'="':
            raise _SDError("structured data: expected '=\"' after PARAM-NAME")
        i += 2
        parts: list[bytes] = []
        while True:
            m = _SDVALUE.match(b, i)
            assert m is not None
            parts.append(m.group())
            i = m.end()
            if i >= n:
                raise _SDError("structured data: unterminated PARAM-VALUE")
            if b[i] == 0x22:  # '"'
                i += 1
                break
            # backslash: \" \\ \] are escapes; anything else is a literal backslash
            if i + 1 < n and b[i + 1] in b'"\\]':
                parts.append(b[i + 1 : i + 2])
                i += 2
            else:
                parts.append(b"\\")
                i += 1
        try:
            value = b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            raise _SDError("structured data: PARAM-VALUE is not UTF-8") from None
        _add_param(params, name, value)


def _parse_sd(b: bytes, i: int) -> tuple[dict[str, dict[str, Any]], int]:
    """STRUCTURED-DATA at ``b[i]`` (not NILVALUE) → ({id: {param: value}}, end).

    SD-IDs and PARAM-NAMEs are keys; a repeated PARAM-NAME gives a list of values
    and a repeated SD-ID merges into one entry (the raw frame keeps the original).
    """
    n = len(b)
    sd: dict[str, dict[str, Any]] = {}
    while i < n and b[i] == 0x5B:  # '['
        m = _SD_ELEM.match(b, i)
        if m is None:  # escapes, or an error to diagnose
            i = _parse_sd_element(b, i, sd)
            continue
        params = sd.setdefault(m.group(1).decode("ascii"), {})
        try:
            for name, value in _SD_PARAM.findall(m.group(2)):
                _add_param(params, name.decode("ascii"), value.decode("utf-8"))
        except UnicodeDecodeError:
            raise _SDError("structured data: PARAM-VALUE is not UTF-8") from None
        i = m.end()
    if not sd:
        raise _SDError("structured data: expected '-' or '['")
    return sd, i


def _diagnose_5424(b: bytes, p: int) -> str:
    """Why an RFC 5424 header (after PRI, at ``p``) did not match."""
    names = ("VERSION", "TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID")
    for name in names:
        j = b.find(b" ", p)
        token = b[p:] if j < 0 else b[p:j]
        if name == "TIMESTAMP" and not _TS5424_ONLY.fullmatch(token):
            return "RFC 5424 header: bad TIMESTAMP"
        if not token or not _PRINTUSASCII.fullmatch(token):
            return f"RFC 5424 header: bad {name}"
        if j < 0:
            return f"RFC 5424 header: ends after {name}"
        p = j + 1
    return "RFC 5424 header: malformed"


def _parse_5424(b: bytes, m: re.Match[bytes]) -> Parsed:
    """``m`` is a match of :data:`_FAST5424`: PRI and the header up to MSGID SP."""
    pri = int(m.group(1))
    if pri > 191:
        return _no_pri(b)
    # the header is printable ASCII (checked by the regex): decode it in one go
    version, ts, host, app, procid, msgid = b[m.start(2) : m.end() - 1].decode("ascii").split(" ")
    out: dict[str, Any] = {
        "format": "rfc5424",
        "pri": pri,
        "facility": pri >> 3,
        "severity": pri & 7,
        "version": int(version),
    }
    if ts != "-":
        out["timestamp"] = ts
    else:  # NILVALUE: the sender had no time (RFC 5424 section 6.2.3), ours stands
        out["timestamp_inferred"] = True
    if host != "-":
        out["hostname"] = host
    if app != "-":
        out["app"] = app
    if procid != "-":
        out["procid"] = procid
    if msgid != "-":
        out["msgid"] = msgid
    i = sd_start = m.end()
    n = len(b)
    if i < n and b[i] == 0x2D:  # '-'
        i += 1
    else:
        try:
            out["sd"], i = _parse_sd(b, i)
        except _SDError as exc:
            return _sd_invalid(b, sd_start, out, str(exc))
    if i == n:
        msg = b""
    elif b[i] == 0x20:
        msg = b[i + 1 :]
        if msg.startswith(_BOM):
            msg = msg[3:]
        msg = _strip_end(msg)
    elif i == n - 1 and b[i] in b"\n\x00":
        msg = b""
    else:
        out.pop("sd", None)
        return _sd_invalid(b, sd_start, out, "structured data: expected SP after it")
    return Parsed(msg, out)


def _sd_invalid(b: bytes, i: int, out: dict[str, Any], reason: str) -> Parsed:
    """Malformed STRUCTURED-DATA: the header stands, SD and MSG become the message."""
    out["sd_invalid"] = reason
    return Parsed(_strip_end(b[i:]), out)


def _timestamp_lenient(b: bytes, p: int, out: dict[str, Any]) -> int:
    """TIMESTAMP at ``b[p]``, not in the RFC's form: lenient or unknown (flagged),
    or none. Returns the position after it (``p`` when there is none). An unknown
    timestamp is kept as text so that HOSTNAME and TAG can still be read.
    """
    m = _TS_LENIENT.match(b, p)
    if m is not None:
        out["timestamp"] = m.group(1).decode("ascii")
        out["timestamp_lenient"] = True
        return m.end()
    if _IS_TAG.match(b, p) is None:
        end = p + 64
        m = _TS_UNKNOWN.match(b, p, end)
        if m is not None and (m.end() < end or end >= len(b)):
            out["timestamp"] = m.group(1).decode("ascii")
            out["timestamp_unparsed"] = True
            return m.end()
    out["timestamp_inferred"] = True
    return p


def _parse_3164(b: bytes, pri: int, p: int) -> Parsed:
    out: dict[str, Any] = {
        "format": "rfc3164",
        "pri": pri,
        "facility": pri >> 3,
        "severity": pri & 7,
    }
    m = _TS3164.match(b, p)  # RFC 3164 section 4.1.2 exactly: the common case
    if m is not None:
        q = m.end()
        out["timestamp"] = b[p:q].rstrip(b" ").decode("ascii")
    else:
        q = _timestamp_lenient(b, p, out)
    # HOSTNAME after a TIMESTAMP, unless the first word is already the TAG
    # (glibc's /dev/log format and journald's ForwardToSyslog have no HOSTNAME)
    if q != p and _IS_TAG.match(b, q) is None:
        h = _HOST3164.match(b, q)
        if h is not None:
            out["hostname"] = h.group(1).decode("ascii")
            q = h.end()
    t = _TAG.match(b, q)
    if t is None:
        t = _TAG_NO_COLON.match(b, q)
        if t is not None:
            out["tag_lenient"] = True
    if t is not None:
        out["app"] = t.group(1).decode("ascii")
        if t.group(2):
            out["procid"] = t.group(2).decode("ascii")
        q = t.end()
    return Parsed(_strip_end(b[q:]), out)


def _no_pri(frame: bytes) -> Parsed:
    """RFC 3164 section 4.3.3: a relay takes a frame without a valid PRI as
    PRI 13 (user.notice), the whole frame being the CONTENT."""
    out: dict[str, Any] = {
        "format": "rfc3164",
        "pri": 13,
        "facility": 1,
        "severity": 5,
        "pri_inferred": True,
        "timestamp_inferred": True,
    }
    return Parsed(_strip_end(frame), out)


def parse_syslog(frame: bytes) -> Parsed:
    """Parse one frame; never raises. ``error`` is set when it is not syslog.

    ``<PRI>`` followed by ``VERSION SP`` is RFC 5424 (strict header, errors
    reported; malformed STRUCTURED-DATA keeps the header and is flagged
    ``sd_invalid``). Anything else is read as RFC 3164 the way a relay must
    (RFC 3164 section 4.3): no valid PRI gives PRI 13 (``pri_inferred``), then
    TIMESTAMP, HOSTNAME and ``TAG[PID]:`` when present. Whatever was inferred
    or accepted outside the RFC is flagged in the result (docs/SYSLOG.md).
    """
    m = _FAST5424.match(frame)
    if m is not None:
        return _parse_5424(frame, m)
    m = _PRI.match(frame)
    if m is None:
        return _no_pri(frame)
    pri = int(m.group(1))
    if pri > 191:
        return _no_pri(frame)
    p = m.end()
    if _VERSION.match(frame, p):
        return Parsed(frame, None, _diagnose_5424(frame, p))
    return _parse_3164(frame, pri, p)


# ---------------------------------------------------------------- stream framing


FRAMINGS: Final = ("auto", "octet-counting", "lf", "nul")
"""Stream framing (``framing:`` of a syslog source; docs/SYSLOG.md, "Framing")."""
MAX_COUNT_DIGITS: Final = 10
"""An octet count has at most this many digits (< 10 GB): a longer run of digits
starts a plain line."""


@dataclass(slots=True)
class Frame:
    data: bytes
    error: str | None = None
    """A framing error (no octet count where one was required): sealed raw."""
    truncated: bool = False
    """The stream ended before the frame did."""
    oversize: int | None = None
    """On the first record of a frame longer than the maximum: the frame's length
    (a lower bound when ``oversize_at_least``)."""
    oversize_at_least: bool = False
    continuation: bool = False
    """The record continues the previous oversize or partial frame of the same peer."""
    octet_count: int | None = None
    """The declared length of an octet-counted frame cut short (truncated, partial)."""
    partial: bool = False
    """Sealed after the connection went idle before the frame's end arrived; the
    rest of the frame, if it comes, follows as continuations."""


def split_oversize(data: bytes, max_bytes: int, frame: Frame | None = None) -> list[Frame]:
    """Cut ``data`` into a first frame of ``max_bytes`` and continuations."""
    first = frame or Frame(b"")
    first.data = data[:max_bytes]
    first.oversize = len(data)
    out = [first]
    for i in range(max_bytes, len(data), max_bytes):
        out.append(Frame(data[i : i + max_bytes], continuation=True))
    return out


_START, _COUNTED, _BIG, _LINE, _CONT = range(5)
_DIGITS = frozenset(b"0123456789")
_DELIMS: Final = {"lf": 0x0A, "octet-counting": 0x0A, "nul": 0x00}


class Framer:
    """RFC 6587 framing of one stream connection.

    ``framing="auto"``: a frame that starts with ``[1-9][0-9]* SP`` is
    octet-counted (RFC 6587 section 3.4.1); anything else is non-transparent
    (section 3.4.2) and ends at LF or NUL, whichever the connection used first
    (Python's SysLogHandler ends messages with NUL; then LF is content). A CR
    before LF is stripped. Empty frames are skipped. ``"lf"``/``"nul"`` fix the
    trailer and turn octet counting off; ``"octet-counting"`` requires counts
    (a frame without one is sealed with an error up to the next LF).

    A frame over ``max_bytes`` is never held whole: it is sealed as it streams,
    a first record (``oversize``: the declared length of an octet-counted frame,
    else the length seen so far, ``oversize_at_least``) and continuations of at
    most ``max_bytes``, so that a connection never buffers more than
    ``max_bytes`` of an unfinished frame. An octet count over ``max_bytes`` is
    honoured: the frame is consumed exactly. :meth:`idle` seals what waits of an
    unfinished frame (``partial``).
    """

    def __init__(self, max_bytes: int, *, framing: str = "auto") -> None:
        self.max = max_bytes
        self.counting = framing in ("auto", "octet-counting")
        self.strict = framing == "octet-counting"
        self._delim: int | None = _DELIMS.get(framing)  # None: LF or NUL, not yet known
        self._buf = bytearray()
        self._state = _START
        self._need = 0  # octet-counted: body bytes still to come
        self._count = 0  # octet-counted: the declared length
        self._first = True  # _BIG: the first record is still to be cut
        self._scan = 0  # delimiter search resumes here
        self._error: str | None = None  # framing error of the current LINE frame

    def pending(self) -> int:
        """Bytes buffered in an incomplete frame."""
        return len(self._buf)

    def _find(self, start: int) -> int:
        buf = self._buf
        d = self._delim
        if d is not None:
            return buf.find(b"\n" if d else b"\x00", start)
        i = buf.find(b"\n", start)
        j = buf.find(b"\x00", start, i if i >= 0 else len(buf))
        return j if j >= 0 else i

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        pos = 0
        more = True
        while more:
            st = self._state
            if st == _START:
                pos, more = self._begin_frame(pos)
            elif st == _COUNTED:
                pos, more = self._take_counted(pos, out)
            elif st == _BIG:
                pos, more = self._take_big(pos, out)
            else:  # _LINE or _CONT: runs to the next delimiter
                pos, more = self._take_delimited(pos, out)
        if pos:
            del self._buf[:pos]
            self._scan -= pos
        return out

    def _begin_frame(self, pos: int) -> tuple[int, bool]:
        """At a frame's first byte: octet-counted (``[1-9][0-9]* SP``) or delimited.

        Returns the position to go on from and whether to go on (False: need more bytes).
        """
        buf = self._buf
        n = len(buf)
        if pos >= n:
            return pos, False
        c = buf[pos]
        self._error = None
        if 0x31 <= c <= 0x39 and self.counting:
            j = pos + 1
            lim = pos + MAX_COUNT_DIGITS
            while j < n and j < lim and buf[j] in _DIGITS:
                j += 1
            if j == n:
                return pos, False  # undecided: need more digits or the SP
            if buf[j] == 0x20:
                count = int(buf[pos:j])
                self._need = self._count = count
                self._state = _COUNTED if count <= self.max else _BIG
                self._first = True
                return j + 1, True
        if self.strict:
            self._error = "octet-counting: frame without an octet count"
        self._state = _LINE
        self._scan = pos
        return pos, True

    def _take_counted(self, pos: int, out: list[Frame]) -> tuple[int, bool]:
        """An octet-counted body, once all of it is buffered."""
        if len(self._buf) - pos < self._need:
            return pos, False
        out.append(Frame(bytes(self._buf[pos : pos + self._need])))
        self._state = _START
        return pos + self._need, True

    def _take_big(self, pos: int, out: list[Frame]) -> tuple[int, bool]:
        """An octet-counted frame over the maximum: cut in pieces as they arrive."""
        buf = self._buf
        mx = self.max
        while self._need:
            take = min(mx, self._need)
            if len(buf) - pos < take:
                return pos, False
            piece = bytes(buf[pos : pos + take])
            if self._first:
                self._first = False
                out.append(Frame(piece, oversize=self._count))
            else:
                out.append(Frame(piece, continuation=True))
            pos += take
            self._need -= take
        self._state = _START
        return pos, True

    def _take_delimited(self, pos: int, out: list[Frame]) -> tuple[int, bool]:
        """A LINE or CONT frame: complete at the next delimiter, else what can go now."""
        i = self._find(self._scan)
        if i < 0:
            return self._take_partial(pos, out), False
        buf = self._buf
        mx = self.max
        d = buf[i]
        if self._delim is None:
            self._delim = d  # the connection's trailer, from now on
        end = i - 1 if i > pos and d == 0x0A and buf[i - 1] == 0x0D else i
        body = bytes(buf[pos:end])
        if self._state == _CONT:
            for k in range(0, len(body), mx):
                out.append(Frame(body[k : k + mx], continuation=True))
        elif len(body) > mx:
            out.extend(split_oversize(body, mx, Frame(b"", self._error)))
        elif body or self._error:
            out.append(Frame(body, self._error))
        self._state = _START
        return i + 1, True

    def _take_partial(self, pos: int, out: list[Frame]) -> int:
        """No delimiter yet: an oversize line goes out now as a first frame and
        continuations, the rest waits. Returns the new position."""
        buf = self._buf
        n = len(buf)
        mx = self.max
        self._scan = n
        size = n - pos
        if self._state == _LINE and size > mx:
            # the length is only a lower bound
            first = Frame(b"", self._error, oversize_at_least=True)
            first.data = bytes(buf[pos : pos + mx])
            first.oversize = size
            out.append(first)
            pos += mx
            self._state = _CONT
        if self._state == _CONT:
            while n - pos >= mx:
                out.append(Frame(bytes(buf[pos : pos + mx]), continuation=True))
                pos += mx
        return pos

    def _rest(self, *, at_least: bool) -> list[Frame]:
        """What is buffered of the current frame, as records (the buffer is emptied);
        ``at_least``: more of the frame may come."""
        buf = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        mx = self.max
        st = self._state
        if not buf:
            return []
        if st == _CONT or (st == _BIG and not self._first):
            return [Frame(buf[k : k + mx], continuation=True) for k in range(0, len(buf), mx)]
        if st in (_COUNTED, _BIG):
            out = split_oversize(buf, mx) if len(buf) > mx else [Frame(buf)]
            if st == _BIG:
                out[0].oversize = self._count
            else:
                out[0].oversize = None
            out[0].octet_count = self._count
            return out
        if len(buf) > mx:
            return split_oversize(buf, mx, Frame(b"", self._error, oversize_at_least=at_least))
        return [Frame(buf, self._error)]

    def idle(self) -> list[Frame]:
        """The sender went quiet inside a frame: seal what is buffered (``partial``);
        the rest of the frame, if it comes, follows as continuations. Digits that
        may yet be an octet count (at most 10 bytes) wait for the rest or the end."""
        if self._state == _START:
            return []
        out = self._rest(at_least=True)
        if not out:
            return out
        for f in out:
            f.partial = True
        st = self._state
        if st in (_COUNTED, _BIG):
            self._need -= sum(len(f.data) for f in out)
            self._state = _BIG
            self._first = False
            if not self._need:
                self._state = _START
        else:
            self._state = _CONT
        return out

    def eof(self) -> list[Frame]:
        """The stream ended: whatever is buffered comes out flagged ``truncated``."""
        out = self._rest(at_least=False)
        st = self._state
        self._state = _START
        if st == _COUNTED and not out:
            out = [Frame(b"", octet_count=self._count)]
        elif st == _BIG and not out and self._need:
            out = [Frame(b"", continuation=True, octet_count=self._count)]
        elif st == _CONT and not out:  # the stream ended inside an oversize frame
            out = [Frame(b"", continuation=True)]
        if out:
            out[-1].truncated = True
        return out


def datagram_frames(data: bytes, max_bytes: int, *, truncated: bool = False) -> list[Frame]:
    """One datagram is one frame (cut into continuations if it is oversize)."""
    out = split_oversize(data, max_bytes) if len(data) > max_bytes else [Frame(data)]
    if truncated:
        out[-1].truncated = True
    return out


# ---------------------------------------------------------------- records


def raw_attrs(data: bytes, attrs: dict[str, Any]) -> None:
    """Store a frame losslessly: ``raw`` (UTF-8) or ``raw_b64``."""
    try:
        attrs["raw"] = data.decode("utf-8")
    except UnicodeDecodeError:
        attrs["raw_b64"] = base64.b64encode(data).decode("ascii")


def frame_fields(
    frame: Frame, *, time_ns: int, source: str, base: dict[str, Any]
) -> tuple[Fields, str | None]:
    """The record for one frame, and its parse error (if any).

    ``base`` holds the per-connection attributes (``transport``, ``peer``, …); it
    is copied, never modified.
    """
    attrs = dict(base)
    data = frame.data
    error: str | None = None
    if frame.continuation:
        attrs["continuation"] = True
        message = data
    else:
        if frame.error is not None:
            error = frame.error
            message = data
        else:
            p = parse_syslog(data)
            error = p.error
            message = p.message
            if p.syslog is not None:
                attrs["syslog"] = p.syslog
        raw_attrs(data, attrs)
    if error is not None:
        attrs["parse_error"] = error
    if frame.oversize is not None:
        attrs["oversize"] = frame.oversize
        if frame.oversize_at_least:
            attrs["oversize_at_least"] = True
    if frame.partial:
        attrs["partial"] = True
    if frame.octet_count is not None:
        attrs["octet_count"] = frame.octet_count
    if frame.truncated:
        attrs["truncated"] = True
    return Fields(time_ns, source, message, None, attrs), error
