"""A second, minimal verifier of auditd-py archive format version 2.

Written from docs/FORMAT.md alone, with hashlib, gzip, cryptography and
zstandard only (the last two for Ed25519 and for ``.zst`` segments): it does
not import auditd_py, so that a disagreement between the document and the
reference implementation shows up as a disagreement between two verifiers.
Section numbers below refer to docs/FORMAT.md.

Usage::

    python tests/independent_verifier.py ARCHIVE_DIR KEY_FILE

``KEY_FILE`` is either the verification key (key mode: MACs are checked too)
or the public key (public-key mode). Exit status 0 means intact; a failure
raises :class:`VerificationError` naming the check (``C1``…``F4``) and, where
the document gives one, the ``what`` code.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import zstandard
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# ---------------------------------------------------------------- constants (sections 4, 8, 12)

FORMAT_TAG = b"auditd-py/1"
SIG_CONTEXT = b"auditd-py checkpoint v1\x00"
META_SOURCE = "auditd-py"
ZERO = bytes(32)

SEAL_LEN = 148
SIG_SUFFIX_LEN = 144
_SEAL_RE = re.compile(rb',"link":"([0-9a-f]{64})","mac":"([0-9a-f]{64})"\}')
_SIG_RE = re.compile(rb',"signature":"([0-9a-f]{128})"\}')
_SEGMENT_NAME = re.compile(r"seg-[0-9]{10}\.jsonl")
_SEGMENT_FILE = re.compile(r"(seg-[0-9]{10}\.jsonl)(\.zst|\.gz)?")  # section 3
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHECKPOINT_NAME = re.compile(r"cp-[0-9]{10}\.json")
_SOURCE_KEY = b',"source":'
_META_VALUE = b'"auditd-py",'
_REASONS = ("genesis", "interval", "records", "close")


class VerificationError(Exception):
    """The archive does not verify. ``check`` is the number of the failed check."""

    def __init__(
        self,
        check: str,
        message: str,
        *,
        what: str | None = None,
        file: str | None = None,
        line: int | None = None,
        seq: int | None = None,
    ) -> None:
        where = ", ".join(
            f"{k} {v}" for k, v in (("file", file), ("line", line), ("seq", seq)) if v is not None
        )
        super().__init__(f"{check} ({what or 'format'}){': ' + where if where else ''}: {message}")
        self.check = check
        self.what = what
        self.file = file
        self.line = line
        self.seq = seq


# ---------------------------------------------------------------- strict JSON (section 1)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strings(v: Any) -> None:
    if isinstance(v, str):
        v.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_strings(k)
            _check_strings(x)
    elif isinstance(v, list):
        for x in v:
            _check_strings(x)


def loads(data: bytes) -> Any:
    """RFC 8259 JSON as section 1 requires: no duplicate keys, no NaN or Infinity, no
    lone surrogates. Raises ValueError."""
    obj = json.loads(data, object_pairs_hook=_pairs, parse_constant=_no_constant)
    _check_strings(obj)
    return obj


# ---------------------------------------------------------------- primitives (sections 4, 9, 10)


def h(tag: int, *parts: bytes) -> bytes:
    """BLAKE2b-256 of one tag byte followed by the parts."""
    st = hashlib.blake2b(bytes([tag]), digest_size=32)
    for p in parts:
        st.update(p)
    return st.digest()


def leaf(body: bytes) -> bytes:
    return h(0x00, body)


def node(left: bytes, right: bytes) -> bytes:
    return h(0x01, left, right)


def link(prev: bytes, prev_mac: bytes, leaf_hash: bytes) -> bytes:
    """Section 9: the link covers the previous link, the previous MAC and the leaf."""
    return h(0x02, prev, prev_mac, leaf_hash)


def mac(key: bytes, link_value: bytes) -> bytes:
    return hashlib.blake2b(b"\x03" + link_value, digest_size=32, key=key).digest()


def genesis(identity: bytes) -> bytes:
    return h(0x04, FORMAT_TAG, identity)


def next_mac_key(key: bytes) -> bytes:
    return h(0x05, key)


def cp_digest(line: bytes) -> bytes:
    return h(0x06, line)


def next_sign_seed(seed: bytes) -> bytes:
    return h(0x07, seed)


def fingerprint(public_key: bytes) -> str:
    return h(0x08, public_key).hex()


def merkle_append(stack: list[bytes], size: int, leaf_hash: bytes) -> None:
    """Append a leaf to the compact range of a tree of ``size`` leaves (section 10)."""
    x, k = leaf_hash, size
    while k & 1:
        x = node(stack.pop(), x)
        k >>= 1
    stack.append(x)


def merkle_root(stack: list[bytes]) -> bytes:
    if not stack:
        return ZERO
    r = stack[-1]
    for s in reversed(stack[:-1]):
        r = node(s, r)
    return r


def root_from_path(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, as written out in section 10."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise ValueError("inclusion path too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion path too short")
    return r


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _is_int(v: object) -> TypeGuard[int]:
    """A JSON integer (not a boolean, not a float)."""
    return type(v) is int


def _is_hex64(v: object) -> TypeGuard[str]:
    """64 lower-case hex digits (32 bytes)."""
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def _is_range(v: object, size: int) -> TypeGuard[list[str]]:
    """A compact range of a tree of ``size`` leaves: popcount(size) hex digests."""
    return isinstance(v, list) and len(v) == size.bit_count() and all(_is_hex64(x) for x in v)


def _segment_name(v: object) -> TypeGuard[str]:
    return isinstance(v, str) and _SEGMENT_NAME.fullmatch(v) is not None


def _sig_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, SIG_CONTEXT + message)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- compact JSON (section 1)

_SHORT = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def json_str(s: str) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif c in _SHORT:
            out.append(_SHORT[c])
        elif c < 0x20:
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------- keys (sections 5, 7)


@dataclass(frozen=True)
class Key:
    public_key: bytes
    mac_key: bytes | None  # None: public-key mode


def _hex_field(obj: dict[str, Any], key: str, size: int) -> bytes:
    v = obj.get(key)
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]*", v) or len(v) != 2 * size:
        raise ValueError(f"key file field {key!r} is not {size} bytes of lower-case hex")
    return bytes.fromhex(v)


def load_key(data: bytes) -> Key:
    """Read a verification key or a public key file (section 7)."""
    obj = loads(data)
    if not isinstance(obj, dict) or type(obj.get("v")) is not int or obj.get("v") != 1:
        raise ValueError("not a version-1 key file")
    if obj.get("type") == "auditd-py.verify-key":
        return Key(_hex_field(obj, "public_key", 32), _hex_field(obj, "mac_key", 32))
    if obj.get("type") == "auditd-py.public-key":
        return Key(_hex_field(obj, "public_key", 32), None)
    raise ValueError(f"unknown key file type {obj.get('type')!r}")


def _check_identity(data: bytes) -> dict[str, Any]:
    """Section 5: the identity file (a format error on failure)."""
    f = "archive.json"
    try:
        obj = loads(data)
    except ValueError as exc:
        raise VerificationError("I", f"identity is not JSON: {exc}", file=f) from exc
    if not isinstance(obj, dict) or obj.get("type") != "auditd-py.archive":
        raise VerificationError("I", "not an archive identity", file=f)
    if type(obj.get("v")) is not int or obj["v"] != 2:  # section 5: version 1 is refused
        raise VerificationError("I", "not a version-2 archive identity", file=f)
    for k in ("archive", "host", "created", "public_key"):
        if k not in obj:
            raise VerificationError("I", f"identity has no {k!r}", file=f)
    if type(obj["created"]) is not int or not isinstance(obj["archive"], str):
        raise VerificationError("I", "identity created or archive mistyped", file=f)
    pk = obj["public_key"]
    if not isinstance(pk, str) or not _HEX64.fullmatch(pk):
        raise VerificationError("I", "identity public_key is not 64 lower-case hex", file=f)
    if obj.get("public_key_fingerprint") != fingerprint(bytes.fromhex(pk)):
        raise VerificationError("I", "public_key_fingerprint does not match", file=f)
    return obj


# ---------------------------------------------------------------- checkpoints (section 12)


@dataclass(frozen=True)
class Checkpoint:
    line: bytes
    body: bytes
    signature: bytes
    archive: str
    epoch: int
    reason: str
    start: int
    end: int
    seq_first: int
    seq_end: int
    chain_head: bytes
    mac_head: bytes
    merkle_root: bytes
    prev: bytes
    public_key: bytes
    next_public_key: bytes


_CP_INTS = ("epoch", "start", "end", "seq_first", "seq_end")
_CP_HEX = ("chain_head", "mac_head", "merkle_root", "prev", "public_key", "next_public_key")


def parse_checkpoint(raw: bytes, *, file: str, check: str = "C1") -> Checkpoint:
    """C1: a well-formed, canonical checkpoint line (sections 12.1 and 12.3)."""
    line = raw[:-1] if raw.endswith(b"\n") else raw  # exactly one 0x0A is stripped
    n = len(line)
    m = _SIG_RE.fullmatch(line, n - SIG_SUFFIX_LEN) if n > SIG_SUFFIX_LEN else None
    if m is None:
        raise VerificationError(check, "signature suffix missing or malformed", file=file)
    try:
        obj = loads(line)
    except ValueError as exc:
        raise VerificationError(check, f"checkpoint is not JSON: {exc}", file=file) from exc
    if not isinstance(obj, dict):
        raise VerificationError(check, "checkpoint is not a JSON object", file=file)
    if obj.get("type") != "auditd-py.checkpoint" or type(obj.get("v")) is not int or obj["v"] != 1:
        raise VerificationError(check, "not a version-1 checkpoint", file=file)
    if obj.get("reason") not in _REASONS or not isinstance(obj.get("archive"), str):
        raise VerificationError(check, "checkpoint reason or archive invalid", file=file)
    for k in _CP_INTS:
        v = obj.get(k)
        if type(v) is not int or v < 0:
            raise VerificationError(check, f"checkpoint field {k!r} invalid", file=file)
    for k in _CP_HEX:
        v = obj.get(k)
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
            raise VerificationError(check, f"checkpoint field {k!r} invalid", file=file)
    canonical = (
        '{"v":1,"type":"auditd-py.checkpoint"'
        f',"archive":{json_str(obj["archive"])},"epoch":{obj["epoch"]}'
        f',"reason":{json_str(obj["reason"])},"start":{obj["start"]},"end":{obj["end"]}'
        f',"seq_first":{obj["seq_first"]},"seq_end":{obj["seq_end"]}'
        + "".join(f',"{k}":"{obj[k]}"' for k in _CP_HEX)
    ).encode()
    body = line[: n - SIG_SUFFIX_LEN]
    if body != canonical:
        raise VerificationError(check, "checkpoint is not in canonical form", file=file)
    return Checkpoint(
        line=line,
        body=body,
        signature=bytes.fromhex(m.group(1).decode()),
        archive=obj["archive"],
        epoch=obj["epoch"],
        reason=obj["reason"],
        start=obj["start"],
        end=obj["end"],
        seq_first=obj["seq_first"],
        seq_end=obj["seq_end"],
        chain_head=bytes.fromhex(obj["chain_head"]),
        mac_head=bytes.fromhex(obj["mac_head"]),
        merkle_root=bytes.fromhex(obj["merkle_root"]),
        prev=bytes.fromhex(obj["prev"]),
        public_key=bytes.fromhex(obj["public_key"]),
        next_public_key=bytes.fromhex(obj["next_public_key"]),
    )


def check_checkpoints(
    items: list[tuple[str, bytes]], archive_id: str, created: int, public_key: bytes
) -> list[Checkpoint]:
    """C1–C8 over the checkpoints in file-name order (section 15.2)."""
    cps: list[Checkpoint] = []
    expected_key = public_key
    if not items:  # G1 (section 12.6): the genesis checkpoint is always there
        raise VerificationError("G1", "no checkpoint at all", what="missing_genesis")
    for e, (name, raw) in enumerate(items):
        cp = parse_checkpoint(raw, file=name)  # C1
        if e == 0 and (cp.epoch != 0 or cp.reason != "genesis" or cp.seq_end != 0):
            raise VerificationError(
                "G1", "no genesis checkpoint", what="missing_genesis", file=name
            )
        if e > 0 and cp.reason == "genesis":
            raise VerificationError("C1", "a second genesis checkpoint", file=name)
        prev = cps[-1] if cps else None
        if cp.epoch != e:
            what = "missing_checkpoint" if cp.epoch > e else "checkpoint_order"
            raise VerificationError("C2", f"expected epoch {e}", what=what, file=name)
        if cp.archive != archive_id:
            raise VerificationError("C3", "other archive", what="identity", file=name)
        if not _same(cp.public_key, expected_key):
            raise VerificationError("C4", "key not certified", what="bad_signature", file=name)
        if not _sig_ok(expected_key, cp.body, cp.signature):
            raise VerificationError("C5", "bad signature", what="bad_signature", file=name)
        want_prev = cp_digest(prev.line) if prev is not None else ZERO
        if not _same(cp.prev, want_prev):
            raise VerificationError("C6", "prev digest", what="checkpoint_link", file=name)
        want_first = prev.seq_end if prev is not None else 0
        if cp.seq_first != want_first or cp.seq_end < cp.seq_first:
            raise VerificationError("C7", "seq range", what="checkpoint_range", file=name)
        want_start = prev.end if prev is not None else created
        if cp.start != want_start or cp.end < cp.start:
            raise VerificationError("C8", "window", what="checkpoint_window", file=name)
        cps.append(cp)
        expected_key = cp.next_public_key
    return cps


# ---------------------------------------------------------------- records (sections 8, 11, 15)


@dataclass
class Result:
    mode: str
    records: int = 0
    """Records read (those still present: from ``first_seq`` on)."""
    sealed_records: int = 0
    """Records read that a checkpoint covers (up to the last checkpoint's ``seq_end``)."""
    segments: int = 0
    checkpoints: int = 0
    first_seq: int = 0
    """The seq the archive starts at: 0, or ``first_seq`` of a retained archive (16.2)."""
    anchor_epoch: int | None = None
    recovered: list[dict[str, Any]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def unsealed_records(self) -> int:
        return self.records - self.sealed_records


@dataclass(frozen=True)
class _Segment:
    """A segment read completely: what R7b and R8 case (a) compare with."""

    length: int  # bytes up to and including the last 0x0A (15.6)
    first_seq: int  # the seq of its first record (its header)
    seq_end: int  # one past its last record
    link: bytes  # link of its last record
    mac: bytes  # MAC stored in its last record
    stack: tuple[bytes, ...]  # the Merkle compact range after its last record


_Fail = Callable[[str, str, str | None], VerificationError]


@dataclass(frozen=True)
class _Cut:
    """Where a retained archive resumed (15.5): its first segment's header."""

    segment: str
    prev_segment: str
    first_seq: int
    prev_link: str
    prev_mac: str
    merkle_range: tuple[str, ...]


def _first_int_after(body: bytes, key: bytes) -> int | None:
    i = body.find(b'"' + key + b'":')
    if i < 0:
        return None
    m = re.match(rb"-?[0-9]+", body[i + len(key) + 3 :])
    return int(m.group()) if m else None


_DELETION_FIELDS = (
    "segment",
    "file",
    "bytes",
    "seq_first",
    "seq_end",
    "last_link",
    "last_mac",
    "merkle_range",
    "checkpoint",
    "policy",
    "reason",
    "undelivered",
    "history",
)
_POLICIES = ("max_age", "max_total_bytes", "max_segments", "min_free_bytes", "disk_pressure")


def history_step(digest: bytes, line: bytes) -> bytes:
    """Section 16.4: D(k+1) = H(0x0d, D(k) || line_k)."""
    return h(0x0D, digest, line)


def check_deletion_fields(
    attrs: dict[str, Any], seq: int, closed: int, cps: list[Checkpoint], fail: _Fail
) -> None:
    """R8.1 (the fields) and R8.2 (the covering checkpoint) of section 16.3."""

    def bad(msg: str) -> VerificationError:
        return fail("R8", f"retention record: {msg}", "retention")

    if sorted(attrs) != sorted(_DELETION_FIELDS):
        raise bad("fields differ")
    seg, seq_first, seq_end = attrs["segment"], attrs["seq_first"], attrs["seq_end"]
    if not _segment_name(seg):
        raise bad("names no segment")
    if attrs["file"] not in (seg, seg + ".zst", seg + ".gz"):
        raise bad("file is not the segment's")
    if not _is_int(attrs["bytes"]) or attrs["bytes"] < 0:
        raise bad("bytes invalid")
    if not (_is_int(seq_first) and _is_int(seq_end) and 0 <= seq_first < seq_end <= seq):
        raise bad("seq range invalid")
    rng = attrs["merkle_range"]
    if not _is_hex64(attrs["last_link"]) or not _is_hex64(attrs["last_mac"]):
        raise bad("chain state malformed")
    if not _is_range(rng, seq_end):
        raise bad("merkle_range malformed")
    cpref, hist = attrs["checkpoint"], attrs["history"]
    if not isinstance(cpref, dict) or sorted(cpref) != ["digest", "epoch"]:
        raise bad("checkpoint malformed")
    if attrs["policy"] not in _POLICIES or not isinstance(attrs["reason"], str):
        raise bad("policy or reason invalid")
    if not isinstance(attrs["undelivered"], bool):
        raise bad("undelivered is not a boolean")
    if (
        not isinstance(hist, dict)
        or sorted(hist) != ["count", "digest"]
        or not _is_int(hist["count"])
        or hist["count"] < 0
        or not _is_hex64(hist["digest"])
    ):
        raise bad("history malformed")
    e = cpref["epoch"]
    if not _is_int(e) or not 0 <= e < closed:
        raise bad("names no closed checkpoint")
    cp = cps[e]
    if cp.seq_end < seq_end or (e > 0 and cps[e - 1].seq_end >= seq_end):
        raise bad("names the wrong checkpoint")
    if cpref["digest"] != cp_digest(cp.line).hex():
        raise bad("checkpoint digest differs")
    if cp.seq_end == seq_end and (
        attrs["last_link"] != cp.chain_head.hex()
        or attrs["last_mac"] != cp.mac_head.hex()
        or merkle_root([bytes.fromhex(x) for x in rng]) != cp.merkle_root
    ):
        raise bad("chain state differs from the checkpoint that ends there")


class _History:
    """Section 16.4: deletions.jsonl and the history carried by the sealed records."""

    def __init__(self, data: bytes, cps: list[Checkpoint]) -> None:
        if data and not data.endswith(b"\n"):
            raise VerificationError("R8", "deletions.jsonl is torn", file="deletions.jsonl")
        self.lines = data[:-1].split(b"\n") if data else []
        self.cps = cps
        self.count: int = 0  # history.count the next sealed record must carry
        self.first = True
        self.digest = ZERO
        self.listed: list[dict[str, Any]] = []

    def sealed(self, line: bytes, obj: dict[str, Any], present: bool, fail: _Fail) -> None:
        hist = obj["attrs"]["history"]
        if self.first:
            self.first = False
            if hist["count"] > len(self.lines):
                raise fail("R8", "history longer than deletions.jsonl", "retention")
            for i in range(hist["count"]):
                self.entry(i)
            self.count = hist["count"]
        if hist["count"] != self.count or hist["digest"] != self.digest.hex():
            raise fail("R8", "history count or digest differs", "retention")
        if self.count < len(self.lines):
            if self.lines[self.count] != line:
                raise fail("R8", "record differs from its deletions.jsonl entry", "retention")
        elif not present:
            raise fail("R8", "record of a deleted segment missing in deletions.jsonl", "retention")
        self.add(line, obj, True, fail)

    def entry(self, i: int) -> None:
        """Entry ``i`` of deletions.jsonl, whose record is no longer in a segment."""
        line = self.lines[i]

        def fail(check: str, msg: str, what: str | None) -> VerificationError:
            return VerificationError(check, msg, what=what, file="deletions.jsonl", line=i + 1)

        n = len(line)
        if n <= SEAL_LEN or not _SEAL_RE.fullmatch(line, n - SEAL_LEN):
            raise fail("R8", "entry is not a sealed record", "retention")
        if not line.startswith(b'{"seq":'):
            raise fail("R8", "entry is not a sealed record", "retention")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise fail("R8", f"entry is not JSON: {exc}", "retention") from exc
        if (
            not isinstance(obj, dict)
            or obj.get("source") != META_SOURCE
            or obj.get("event") != "retention.deleted"
            or not isinstance(obj.get("attrs"), dict)
            or not all(_is_int(obj.get(k)) for k in ("seq", "epoch", "time"))
        ):
            raise fail("R8", "entry is not a retention.deleted record", "retention")
        closed = min(obj["epoch"], len(self.cps))
        check_deletion_fields(obj["attrs"], obj["seq"], closed, self.cps, fail)
        hist = obj["attrs"]["history"]
        if hist["count"] != i or hist["digest"] != self.digest.hex():
            raise fail("R8", "entry's history differs", "retention")
        self.add(line, obj, False, fail)

    def add(self, line: bytes, obj: dict[str, Any], in_archive: bool, fail: _Fail) -> None:
        """R8.5: oldest first from seq 0, each where the one before ended (or a retry)."""
        a = obj["attrs"]
        if self.listed:
            p = self.listed[-1]["attrs"]
            same_as_before = all(
                a[k] == p[k]
                for k in (
                    "segment",
                    "seq_first",
                    "seq_end",
                    "last_link",
                    "last_mac",
                    "merkle_range",
                )
            )
            follows = a["seq_first"] == p["seq_end"] and a["segment"] > p["segment"]
            if not (same_as_before or follows):
                raise fail("R8", "deletion does not follow the one before", "retention")
        elif a["seq_first"] != 0:
            raise fail("R8", "the first deletion does not start at seq 0", "retention")
        self.listed.append(
            {
                "n": a["history"]["count"],
                "seq": obj["seq"],
                "segment": a["segment"],
                "seq_first": a["seq_first"],
                "seq_end": a["seq_end"],
                "policy": a["policy"],
                "reason": a["reason"],
                "in_archive": in_archive,
                "attrs": a,
            }
        )
        self.digest = history_step(self.digest, line)
        self.count = a["history"]["count"] + 1


class _Walk:
    """The record loop of section 15.1, steps 4 and 5."""

    def __init__(
        self, identity: bytes, cps: list[Checkpoint], mac_key: bytes | None, deletions: bytes
    ) -> None:
        self.cps = cps
        self.history = _History(deletions, cps)
        self.mac_key = mac_key
        self.seq = 0
        self.head = genesis(identity)
        self.mac = ZERO  # MAC of the previous record; zeros before record 0
        self.stack: list[bytes] = []
        self.ci = 0
        self.done: dict[str, _Segment] = {}  # segments read completely
        self.prev_segment: str | None = None
        self.first_seq = 0
        self.cut: _Cut | None = None  # set when a retained archive resumes (15.5)
        self.cut_accounted = False  # a case-(b) retention record was seen (16.3, F3)
        self.recovered: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.close_epochs("")

    def close_epochs(self, file: str, line: int | None = None) -> None:
        """R6."""
        while self.ci < len(self.cps) and self.cps[self.ci].seq_end == self.seq:
            cp = self.cps[self.ci]
            if not (
                _same(cp.chain_head, self.head)
                and _same(cp.mac_head, self.mac)
                and _same(cp.merkle_root, merkle_root(self.stack))
            ):
                raise VerificationError(
                    "R6",
                    f"records do not match checkpoint {cp.epoch}",
                    what="checkpoint_mismatch",
                    file=file or None,
                    line=line,
                )
            self.ci += 1
            if self.mac_key is not None:
                self.mac_key = next_mac_key(self.mac_key)

    def segment(self, name: str, data: bytes, *, last: bool) -> str | None:
        """Read one segment (section 15.1 step 5, then 15.6); returns a warning or None."""
        file = f"segments/{name}"
        *lines, torn = data.split(b"\n")
        first_seq = self.seq
        for no, line in enumerate(lines, 1):
            self.record(name, no, line)
            if no == 1:
                first_seq = self.seq - 1  # after a resumption this is the resumed seq
        self.done[name] = _Segment(
            length=len(data) - len(torn),
            first_seq=first_seq,
            seq_end=self.seq,
            link=self.head,
            mac=self.mac,
            stack=tuple(self.stack),
        )
        self.prev_segment = name
        if not lines and not last:
            raise VerificationError("S", "segment is empty", what="segment_header", file=file)
        if torn and not last:
            raise VerificationError(
                "S", "torn line in a segment that is not the last", what="format", file=file
            )
        if torn:
            return f"{file}: torn last line ({len(torn)} bytes)"
        if not lines:
            return f"{file}: empty last segment"
        return None

    def resume(self, name: str, attrs: dict[str, Any], file: str) -> None:
        """15.5: the first segment of a retained archive; start from its header's state."""

        def fail(msg: str) -> VerificationError:
            return VerificationError("R5", msg, what="missing_segment", file=file, line=1)

        prev, first = attrs.get("prev_segment"), attrs.get("first_seq")
        prev_link, prev_mac = attrs.get("prev_link"), attrs.get("prev_mac")
        rng = attrs.get("merkle_range")
        if not _segment_name(prev) or not prev < name:
            raise fail("prev_segment of the first segment is not an earlier segment name")
        if not _is_int(first) or first <= 0:
            raise fail("first_seq of a retained archive is not a positive integer")
        if not _is_hex64(prev_link) or not _is_hex64(prev_mac):
            raise fail("the first segment's header does not state prev_link and prev_mac")
        if not _is_range(rng, first):
            raise fail("the first segment's header does not state the compact range at the cut")
        if not any(cp.seq_end >= first for cp in self.cps):
            raise fail("no checkpoint covers the records before the first segment")
        self.seq = first
        self.head = bytes.fromhex(prev_link)
        self.mac = bytes.fromhex(prev_mac)
        self.stack = [bytes.fromhex(x) for x in rng]
        while self.ci < len(self.cps) and self.cps[self.ci].seq_end < first:
            self.ci += 1  # checkpoints of deleted records only
            if self.mac_key is not None:
                self.mac_key = next_mac_key(self.mac_key)
        self.close_epochs(file, 1)  # R6 once: a checkpoint ending at first_seq
        self.first_seq = first
        self.cut = _Cut(name, prev, first, prev_link, prev_mac, tuple(rng))

    def check_retention(
        self, line: bytes, obj: dict[str, Any], attrs: dict[str, Any], fail: _Fail
    ) -> None:
        """R8: a ``retention.deleted`` record (section 16.3), met in the segments."""
        seq = obj["seq"]
        check_deletion_fields(attrs, seq, self.ci, self.cps, fail)  # R8.1, R8.2
        seg, seq_first, seq_end = attrs["segment"], attrs["seq_first"], attrs["seq_end"]
        last_link, last_mac, rng = attrs["last_link"], attrs["last_mac"], attrs["merkle_range"]
        # 3. which deletion it is
        cut = self.cut
        present = seg in self.done
        if present:  # (a) still present: an interrupted deletion
            s = self.done[seg]
            if (
                seq_first != s.first_seq
                or seq_end != s.seq_end
                or last_link != s.link.hex()
                or last_mac != s.mac.hex()
                or rng != [x.hex() for x in s.stack]
                or (attrs["file"] == seg and attrs["bytes"] != s.length)
            ):
                raise fail("R8", f"retention record does not match {seg}", "retention")
            self.warnings.append(
                f"segments/{seg}: deleted by retention (record seq {seq}) but still present: "
                "the deletion was interrupted"
            )
        elif cut is not None and seg == cut.prev_segment:  # (b) the cut
            if (
                seq_end != cut.first_seq
                or last_link != cut.prev_link
                or last_mac != cut.prev_mac
                or rng != list(cut.merkle_range)
            ):
                raise fail("R8", "retention record does not match the cut", "retention")
            self.cut_accounted = True
        elif cut is not None and seg < cut.segment and seq_end <= cut.first_seq:
            pass  # (c) an earlier deletion
        else:
            raise fail(
                "R8", f"retention record names {seg}, neither present nor deleted", "retention"
            )
        self.history.sealed(line, obj, present, fail)  # R8.4, R8.5

    def record(self, name: str, no: int, line: bytes) -> None:
        file, seq, e = f"segments/{name}", self.seq, self.ci

        def fail(check: str, msg: str, what: str | None) -> VerificationError:
            return VerificationError(check, msg, what=what, file=file, line=no, seq=seq)

        def parse(check: str) -> tuple[dict[str, Any], dict[str, Any]]:
            """The whole line as a JSON object, and its attrs ({} if absent)."""
            try:
                obj = loads(line)
            except ValueError as exc:
                raise fail(check, f"line is not JSON: {exc}", "format") from exc
            if not isinstance(obj, dict):
                raise fail(check, "line is not a JSON object", "format")
            attrs = obj.get("attrs")
            return obj, attrs if isinstance(attrs, dict) else {}

        if no == 1:  # R5, before R1
            obj, attrs = parse("R5")
            if obj.get("source") != META_SOURCE or obj.get("event") != "segment.opened":
                raise fail("R5", "no segment header", "segment_header")
            if attrs.get("segment") != name:
                raise fail("R5", "header names another segment", "segment_swapped")
            if self.prev_segment is None and attrs.get("prev_segment") is not None:
                self.resume(name, attrs, file)  # 15.5: a retained archive
                seq, e = self.seq, self.ci
            else:
                if attrs.get("prev_segment") != self.prev_segment:
                    raise fail("R5", "previous segment differs", "missing_segment")
                if attrs.get("prev_link") != self.head.hex():
                    raise fail("R5", "prev_link is not the chain head", "broken_link")
            if "prev_mac" in attrs and attrs["prev_mac"] != self.mac.hex():
                raise fail("R5", "prev_mac is not the previous MAC", "broken_link")
            if "merkle_range" in attrs and attrs["merkle_range"] != [x.hex() for x in self.stack]:
                raise fail("R5", "merkle_range is not the Merkle stack", "checkpoint_mismatch")
        # R1
        n = len(line)
        m = _SEAL_RE.fullmatch(line, n - SEAL_LEN) if n > SEAL_LEN else None
        if m is None or not line.startswith(b'{"seq":'):
            raise fail("R1", "no well-formed seal", "format")
        body = line[: n - SEAL_LEN]
        rec_link = bytes.fromhex(m.group(1).decode())
        rec_mac = bytes.fromhex(m.group(2).decode())
        # R2
        if not body.startswith(b'{"seq":%d,"epoch":%d,' % (seq, e)):
            got = _first_int_after(body, b"seq")
            what = (
                "format"
                if got is None
                else "wrong_epoch"
                if got == seq
                else "duplicate"
                if got == seq - 1
                else "reorder"
                if got < seq
                else "gap"
            )
            raise fail("R2", f"record is not seq {seq} of epoch {e}", what)
        # R3
        if self.mac_key is not None and not _same(rec_mac, mac(self.mac_key, rec_link)):
            raise fail("R3", "MAC mismatch", "mac_mismatch")
        # R4
        leaf_hash = leaf(body)
        if not _same(rec_link, link(self.head, self.mac, leaf_hash)):
            raise fail("R4", "link mismatch", "broken_link")
        # R7: the first ',"source":' of the body is followed by '"auditd-py",'
        i = body.find(_SOURCE_KEY)
        if i >= 0 and body.startswith(_META_VALUE, i + len(_SOURCE_KEY)):
            obj, attrs = parse("R7")
            event = obj.get("event")
            if event == "segment.opened" and no != 1:
                raise fail("R7", "segment header inside a segment", "segment_header")
            if event == "recovery.torn_tail":
                cut, offset = attrs.get("segment"), attrs.get("offset")
                read = self.done.get(cut) if isinstance(cut, str) else None
                # R7b: the cut segment was read earlier and has that length; or it held
                # only a torn line, was cut to 0 bytes and removed (11.3); or retention
                # deleted it before the first segment of a retained archive (16).
                if not (
                    (read is not None and _is_int(offset) and offset == read.length)
                    or (
                        _is_int(offset)
                        and offset == 0
                        and _segment_name(cut)
                        and cut < name
                        and read is None
                    )
                    or (self.cut is not None and _segment_name(cut) and cut < self.cut.segment)
                ):
                    raise fail("R7", "torn-tail record does not match", "truncated")
                self.recovered.append({"seq": seq, "segment": cut, "offset": offset})
            if event == "retention.deleted":
                self.check_retention(line, obj, attrs, fail)
        # accept, then R6
        merkle_append(self.stack, seq, leaf_hash)
        self.seq = seq + 1
        self.head = rec_link
        self.mac = rec_mac
        self.close_epochs(file, no)


def verify(
    archive: Path,
    key_file: bytes,
    *,
    anchor: bytes | None = None,
    require_sealed: bool = False,
) -> Result:
    """Verify ``archive`` (section 15); raise VerificationError on the first failure."""
    key = load_key(key_file)
    result = Result(mode="key" if key.mac_key is not None else "public-key")
    # 1. identity
    try:
        identity = (archive / "archive.json").read_bytes()
    except FileNotFoundError as exc:
        raise VerificationError("I", "no archive.json", file="archive.json") from exc
    ident = _check_identity(identity)
    if not _same(bytes.fromhex(ident["public_key"]), key.public_key):
        raise VerificationError("I", "another public key", what="identity", file="archive.json")
    # 2. checkpoints
    seg_dir, cp_dir = archive / "segments", archive / "checkpoints"
    if not cp_dir.is_dir():  # section 3: an integrity failure once archive.json exists
        raise VerificationError("D", "checkpoints/ is missing", what="missing_genesis")
    if not seg_dir.is_dir():
        raise VerificationError("D", "segments/ is missing", what="truncated")
    cp_names = sorted(
        n for n in (p.name for p in cp_dir.iterdir()) if _CHECKPOINT_NAME.fullmatch(n)
    )
    items = [(f"checkpoints/{n}", (cp_dir / n).read_bytes()) for n in cp_names]
    cps = check_checkpoints(items, ident["archive"], ident["created"], key.public_key)
    if not _same(cps[0].chain_head, genesis(identity)):  # G2: the identity is signed
        raise VerificationError("G2", "identity not signed", what="identity", file="archive.json")
    # 3. anchor
    if anchor is not None:
        a = parse_checkpoint(anchor, file="anchor", check="A1")
        if a.archive != ident["archive"]:
            raise VerificationError("A1", "anchor of another archive", what="anchor_mismatch")
        if a.epoch >= len(cps):
            raise VerificationError("A2", "archive ends before the anchor", what="truncated")
        if a.line != cps[a.epoch].line:
            raise VerificationError("A3", "checkpoint differs", what="anchor_mismatch")
        result.anchor_epoch = a.epoch
    # 4.-5. records
    log = archive / "deletions.jsonl"
    walk = _Walk(identity, cps, key.mac_key, log.read_bytes() if log.exists() else b"")
    files = segment_files(seg_dir)
    for i, (name, fname) in enumerate(files):
        data = read_segment(seg_dir / fname)
        warning = walk.segment(name, data, last=i == len(files) - 1)
        result.warnings.extend(walk.warnings)
        walk.warnings.clear()
        if warning is not None:
            result.warnings.append(warning)
    # 6. final checks: F3, F1, F2 (15.7)
    if walk.cut is not None and not walk.cut_accounted:
        raise VerificationError(
            "F3",
            f"segments before {walk.cut.segment} are missing, and no retention record "
            "accounts for them",
            what="missing_segment",
            file=f"segments/{walk.cut.segment}",
            line=1,
            seq=walk.cut.first_seq,
        )
    if len(walk.history.lines) > walk.history.count:
        raise VerificationError(
            "F4", "deletions.jsonl has entries no sealed record accounts for", what="retention"
        )
    if walk.ci < len(cps):
        raise VerificationError("F1", "checkpointed records are missing", what="truncated")
    sealed = cps[-1].seq_end if cps else 0
    if require_sealed and walk.seq > sealed:
        raise VerificationError("F2", "records after the last checkpoint", what="unsealed_tail")
    result.records = walk.seq - walk.first_seq
    result.first_seq = walk.first_seq
    result.sealed_records = min(walk.seq, sealed) - walk.first_seq
    result.segments = len(files)
    result.checkpoints = len(cps)
    result.recovered = walk.recovered
    result.retention = walk.history.listed
    return result


def segment_files(seg_dir: Path) -> list[tuple[str, str]]:
    """(logical name, file name) of each segment, in name order (sections 3 and 11.4).

    A plain file wins over a compressed copy of the same segment.
    """
    files: dict[str, str] = {}
    for fname in sorted(p.name for p in seg_dir.iterdir()):
        m = _SEGMENT_FILE.fullmatch(fname)
        if m is None:
            continue
        name = m.group(1)
        have = files.get(name)
        if have is None or m.group(2) is None or (have.endswith(".gz") and fname.endswith(".zst")):
            files[name] = fname  # plain wins, then .zst, then .gz (section 3)
    return sorted(files.items())


def read_segment(path: Path) -> bytes:
    """A segment's bytes; a compressed segment decompressed (11.4: all frames or members).

    A stream that is corrupt or ends inside a frame or member is a failure to read
    the segment (11.4), not a shorter segment.
    """
    raw = path.read_bytes()
    if not raw and path.name.endswith((".zst", ".gz")):  # one frame or member at least
        raise VerificationError(
            "S", "empty compressed file", what="format", file=f"segments/{path.name}"
        )
    try:
        if path.name.endswith(".zst"):
            return _unzstd(raw)
        if path.name.endswith(".gz"):
            return gzip.decompress(raw)  # every member; EOFError if one is cut short
    except (zstandard.ZstdError, OSError, EOFError, ValueError) as exc:
        raise VerificationError(
            "S", f"cannot decompress: {exc}", what="format", file=f"segments/{path.name}"
        ) from exc
    return raw


def _unzstd(data: bytes) -> bytes:
    """Every zstd frame of ``data``, one after another (RFC 8878)."""
    out = bytearray()
    dctx = zstandard.ZstdDecompressor()
    while data:
        obj = dctx.decompressobj()
        out += obj.decompress(data)
        if not obj.eof:
            raise ValueError("the stream ends inside a zstd frame")
        data = obj.unused_data
    return bytes(out)


# ---------------------------------------------------------------- inclusion proofs (section 14)


def check_proof(proof: dict[str, Any], public_key: bytes) -> int:
    """Check an inclusion proof with the public key; return the epoch that signs it."""
    if proof.get("type") != "auditd-py.inclusion-proof" or type(proof.get("v")) is not int:
        raise VerificationError("P", "not an inclusion proof")
    if proof["v"] != 1:
        raise VerificationError("P", "not a version-1 inclusion proof")
    seq, size = proof["seq"], proof["tree_size"]
    expected_key = public_key
    cps: list[Checkpoint] = []
    for i, text in enumerate(proof["checkpoints"]):
        cp = parse_checkpoint(text.encode(), file=f"proof checkpoint {i}", check="P1")
        if cp.epoch != i or not _same(cp.public_key, expected_key):
            raise VerificationError("P1", f"checkpoint {i} is not in the key chain")
        if not _sig_ok(expected_key, cp.body, cp.signature):
            raise VerificationError("P1", f"checkpoint {i} has a bad signature")
        archive_id = cps[0].archive if cps else cp.archive
        if cp.archive != archive_id or cp.archive != proof.get("archive", archive_id):
            raise VerificationError("P1", f"checkpoint {i} is for another archive")
        if not cps and (cp.prev != ZERO or cp.seq_first != 0):
            raise VerificationError("P1", "checkpoint 0 does not start the chain")
        if cps and (cp.prev != cp_digest(cps[-1].line) or cp.seq_first != cps[-1].seq_end):
            raise VerificationError("P1", f"checkpoint {i} does not follow checkpoint {i - 1}")
        cps.append(cp)
        expected_key = cp.next_public_key
    if not cps or cps[-1].seq_end != size:
        raise VerificationError("P2", "no checkpoint, or tree size differs")
    record = proof["record"].encode()
    if len(record) <= SEAL_LEN or _SEAL_RE.fullmatch(record, len(record) - SEAL_LEN) is None:
        raise VerificationError("P3", "record has no well-formed seal")
    if json.loads(record).get("seq") != seq:
        raise VerificationError("P3", "record seq differs from the proof")
    path = [bytes.fromhex(p) for p in proof["path"]]
    try:
        root = root_from_path(seq, size, leaf(record[: len(record) - SEAL_LEN]), path)
    except ValueError as exc:
        raise VerificationError("P4", str(exc)) from exc
    if not _same(root, cps[-1].merkle_root):
        raise VerificationError("P4", "inclusion path does not lead to the signed root")
    return cps[-1].epoch


def record_bytes(line: bytes) -> bytes:
    """The original message bytes of a record line (section 8.2)."""
    obj = json.loads(line)
    raw = obj.get("raw_b64")
    if isinstance(raw, str):
        return base64.b64decode(raw, validate=True)
    return str(obj["message"]).encode("utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: independent_verifier.py ARCHIVE_DIR KEY_FILE", file=sys.stderr)
        return 2
    try:
        r = verify(Path(argv[0]), Path(argv[1]).read_bytes())
    except VerificationError as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    print(
        f"intact ({r.mode}): {r.records} records, {r.unsealed_records} unsealed, "
        f"{r.segments} segments, {r.checkpoints} checkpoints"
    )
    for w in r.warnings:
        print(f"warning: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
