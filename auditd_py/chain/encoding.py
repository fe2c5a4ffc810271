"""Byte-level encodings of format version 1 (see docs/FORMAT.md).

Every hash is BLAKE2b with a 32-byte digest over a one-byte type tag followed by
the data, so that no two kinds of input can ever hash alike:

====  =====================================================================
tag   input
====  =====================================================================
0x00  Merkle leaf: record body bytes (RFC 6962 leaf prefix)
0x01  Merkle node: left ‖ right (RFC 6962 node prefix)
0x02  chain link: previous link ‖ previous MAC ‖ leaf hash
0x03  record MAC (keyed with the epoch MAC key): link
0x04  genesis link: ``FORMAT_TAG`` ‖ archive identity file bytes
0x05  MAC key evolution: previous MAC key
0x06  checkpoint digest: checkpoint line bytes
0x07  signing seed evolution: previous signing seed
0x08  public-key fingerprint: raw Ed25519 public key
====  =====================================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from binascii import Error as BinasciiError
from binascii import hexlify, unhexlify
from dataclasses import dataclass
from typing import Any, Final

import orjson

from auditd_py.errors import FormatError

FORMAT_TAG: Final = b"auditd-py/1"
DIGEST_SIZE: Final = 32
SIG_CONTEXT: Final = b"auditd-py checkpoint v1\x00"

TAG_LEAF: Final = b"\x00"
TAG_NODE: Final = b"\x01"
TAG_LINK: Final = b"\x02"
TAG_MAC: Final = b"\x03"
TAG_GENESIS: Final = b"\x04"
TAG_MAC_EVOLVE: Final = b"\x05"
TAG_CHECKPOINT: Final = b"\x06"
TAG_SIGN_EVOLVE: Final = b"\x07"
TAG_FINGERPRINT: Final = b"\x08"

META_SOURCE: Final = "auditd-py"

# Pre-initialised hash states: copying one is about twice as fast as building anew.
_LEAF = hashlib.blake2b(TAG_LEAF, digest_size=DIGEST_SIZE)
_NODE = hashlib.blake2b(TAG_NODE, digest_size=DIGEST_SIZE)
_LINK = hashlib.blake2b(TAG_LINK, digest_size=DIGEST_SIZE)

# A sealed record line is BODY ‖ SEAL_SUFFIX; the suffix has a fixed length.
_LINK_OPEN: Final = b',"link":"'
_MAC_OPEN: Final = b'","mac":"'
_CLOSE: Final = b'"}'
_CLOSE_NL: Final = b'"}\n'
SEAL_SUFFIX_LEN: Final = len(_LINK_OPEN) + 64 + len(_MAC_OPEN) + 64 + len(_CLOSE)
_SIG_OPEN: Final = b',"signature":"'
SIG_SUFFIX_LEN: Final = len(_SIG_OPEN) + 128 + len(_CLOSE)


def h(tag: bytes, *parts: bytes) -> bytes:
    """BLAKE2b-256 of ``tag ‖ parts``."""
    st = hashlib.blake2b(tag, digest_size=DIGEST_SIZE)
    for p in parts:
        st.update(p)
    return st.digest()


def leaf_hash(body: bytes) -> bytes:
    st = _LEAF.copy()
    st.update(body)
    return st.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    st = _NODE.copy()
    st.update(left)
    st.update(right)
    return st.digest()


def link_hash(prev: bytes, prev_mac: bytes, leaf: bytes) -> bytes:
    """Chain link; it covers the previous record's MAC, so the chain binds MACs too."""
    st = _LINK.copy()
    st.update(prev)
    st.update(prev_mac)
    st.update(leaf)
    return st.digest()


def genesis_link(identity_bytes: bytes) -> bytes:
    return h(TAG_GENESIS, FORMAT_TAG, identity_bytes)


def mac_state(mac_key: bytes) -> Any:
    """A keyed BLAKE2b state for one epoch, to be ``.copy()``-ed per record."""
    return hashlib.blake2b(TAG_MAC, digest_size=DIGEST_SIZE, key=mac_key)


def record_mac(mac_key: bytes, link: bytes) -> bytes:
    st = mac_state(mac_key)
    st.update(link)
    return bytes(st.digest())


def fingerprint(public_key: bytes) -> str:
    return h(TAG_FINGERPRINT, public_key).hex()


def checkpoint_digest(line: bytes) -> bytes:
    return h(TAG_CHECKPOINT, line)


# ---------------------------------------------------------------- record bodies


@dataclass(slots=True)
class Fields:
    """The content of one record, before it is numbered and sealed.

    Not frozen, unlike the other records of this package: a source builds one
    per line, and a frozen dataclass costs four times as much to construct
    (about 1.3 µs against 0.3 µs here). Treat it as immutable all the same.
    """

    time_ns: int
    source: str
    message: bytes
    event: str | None = None
    attrs: dict[str, Any] | None = None
    raw_attrs: bytes | None = None
    """``attrs`` already encoded as a JSON object (a source's fast path); wins over attrs."""
    pos: dict[str, Any] | None = None
    """The source position this record ends at, for the writer (also inside the attrs
    JSON as ``pos``); ``None`` if the source gives it only in ``attrs["pos"]`` or not
    at all (a source may set it on the last record of a batch only)."""


_ts_cache: tuple[int, bytes] = (-1, b"")


def format_ts(time_ns: int) -> bytes:
    """RFC 3339 UTC with nanoseconds, e.g. ``2026-11-26T04:46:05.123456789Z``."""
    global _ts_cache  # noqa: PLW0603 - a one-entry cache, replaced in one assignment
    sec, frac = divmod(time_ns, 1_000_000_000)
    cached = _ts_cache
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
        _ts_cache = cached
    return b"%s.%09dZ" % (cached[1], frac)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise FormatError(f"record field cannot be encoded as JSON: {exc}") from exc


_SOURCES: dict[str, bytes] = {}


def _source_json(source: str) -> bytes:
    """JSON of a source name, cached (a daemon has a handful of sources)."""
    b = _SOURCES.get(source)
    if b is None:
        b = _dumps(source)
        if len(_SOURCES) < 4096:
            _SOURCES[source] = b
    return b


def encode_body(seq: int, epoch: int, f: Fields) -> bytes:
    """The record body: the exact bytes that are hashed, written as a JSON prefix.

    Key order is fixed: seq, epoch, time, ts, source, [event], message,
    [raw_b64], [attrs]. ``message`` is the text; when the original bytes are not
    valid UTF-8 it holds them decoded with U+FFFD replacements and ``raw_b64``
    holds the original bytes, base64 (RFC 4648, padded). Nothing is ever
    re-serialised by a verifier, so ``attrs`` keys keep the order they were given.
    """
    global _ts_cache  # noqa: PLW0603 - see format_ts
    msg = f.message
    try:
        text = msg.decode("utf-8")
        raw = b""
    except UnicodeDecodeError:
        text = msg.decode("utf-8", "replace")
        raw = b',"raw_b64":"' + base64.b64encode(msg) + b'"'
    t = f.time_ns
    sec, frac = divmod(t, 1_000_000_000)
    cached = _ts_cache
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
        _ts_cache = cached
    event = b',"event":' + _dumps(f.event) if f.event is not None else b""
    if f.raw_attrs is not None:
        attrs = b',"attrs":' + f.raw_attrs
    else:
        attrs = b',"attrs":' + _dumps(f.attrs) if f.attrs else b""
    return b'{"seq":%d,"epoch":%d,"time":%d,"ts":"%s.%09dZ","source":%s%s,"message":%s%s%s' % (
        seq,
        epoch,
        t,
        cached[1],
        frac,
        _source_json(f.source),
        event,
        orjson.dumps(text),
        raw,
        attrs,
    )


def seal_line(body: bytes, link: bytes, mac: bytes) -> bytes:
    return body + _LINK_OPEN + hexlify(link) + _MAC_OPEN + hexlify(mac) + _CLOSE_NL


def split_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a record line (without its newline) into (body, link, mac).

    Raises FormatError when the fixed seal suffix is absent or malformed: a line
    whose MAC or link was stripped never verifies (fail closed).
    """
    s = len(line) - SEAL_SUFFIX_LEN
    if (
        s <= 0
        or line[s : s + 9] != _LINK_OPEN
        or line[s + 73 : s + 82] != _MAC_OPEN
        or line[-2:] != _CLOSE
    ):
        raise FormatError("record seal suffix (link, mac) missing or malformed", field="seal")
    if not line.startswith(b'{"seq":'):
        raise FormatError("not a sealed record line", field="seal")
    link_hex = line[s + 9 : s + 73]
    mac_hex = line[s + 82 : s + 146]
    try:
        link = unhexlify(link_hex)
        mac = unhexlify(mac_hex)
    except BinasciiError as exc:
        raise FormatError("link or mac is not 64 hex digits", field="seal") from exc
    if hexlify(link) != link_hex or hexlify(mac) != mac_hex:
        # Exactly one spelling is valid (lower case), so no byte can change unnoticed.
        raise FormatError("link or mac is not in lower-case hex", field="seal")
    return line[:s], link, mac


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        dup = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise ValueError(f"duplicate key {dup!r}")
    return obj


def loads_strict(data: bytes) -> Any:
    """JSON as docs/FORMAT.md section 1 allows it: RFC 8259, and no duplicate keys.

    orjson rejects ``NaN``/``Infinity``, invalid UTF-8 and lone surrogates (escaped
    or not); a second pass finds duplicate keys, which orjson (like most parsers)
    would resolve silently to the last one. Only for the few documents a verifier
    parses (identity, checkpoints, key files, meta records), never in a hot loop.
    Raises ``ValueError`` (``orjson.JSONDecodeError`` is one).
    """
    obj = orjson.loads(data)
    if isinstance(obj, dict | list):
        json.loads(data, object_pairs_hook=_no_duplicates)
    return obj


def parse_record(line: bytes, *, strict: bool = False) -> dict[str, Any]:
    """Parse a whole record line as JSON (for display, diagnostics, and ``strict``ly
    in verification: no duplicate keys, see :func:`loads_strict`)."""
    try:
        obj = loads_strict(line) if strict else orjson.loads(line)
    except ValueError as exc:
        raise FormatError(f"record is not valid JSON: {exc}", field="json") from exc
    if not isinstance(obj, dict):
        raise FormatError("record is not a JSON object", field="json")
    return obj


def record_bytes(obj: dict[str, Any]) -> bytes:
    """The original message bytes of a parsed record (lossless for invalid UTF-8)."""
    raw = obj.get("raw_b64")
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FormatError("raw_b64 is not valid base64", field="raw_b64") from exc
    msg = obj.get("message")
    if not isinstance(msg, str):
        raise FormatError("message is not a string", field="message")
    return msg.encode("utf-8")


def scan_int(body: bytes, key: bytes) -> int | None:
    """Read the integer after ``"key":`` in a body, without a full JSON parse."""
    tag = b'"' + key + b'":'
    i = body.find(tag)
    if i < 0:
        return None
    j = i + len(tag)
    k = j
    while k < len(body) and (48 <= body[k] <= 57 or body[k] == 45):
        k += 1
    try:
        return int(body[j:k])
    except ValueError:
        return None


# ---------------------------------------------------------------- signed JSON documents


def sign_line(body: bytes, signature: bytes) -> bytes:
    return body + _SIG_OPEN + signature.hex().encode() + _CLOSE + b"\n"


def split_signed(line: bytes) -> tuple[bytes, bytes]:
    """Split a signed document line (without newline) into (body, signature)."""
    n = len(line)
    s = n - SIG_SUFFIX_LEN
    if s <= 1 or line[s : s + len(_SIG_OPEN)] != _SIG_OPEN or line[n - 2 :] != _CLOSE:
        raise FormatError("signature missing or malformed", field="signature")
    sig_hex = line[s + len(_SIG_OPEN) : n - 2]
    try:
        sig = bytes.fromhex(sig_hex.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError("signature is not 128 hex digits", field="signature") from exc
    if sig.hex().encode() != sig_hex:
        raise FormatError("signature is not in lower-case hex", field="signature")
    return line[:s], sig


def dumps_prefix(obj: dict[str, Any]) -> bytes:
    """A JSON object without its closing brace, keys in the given order."""
    return orjson.dumps(obj)[:-1]
