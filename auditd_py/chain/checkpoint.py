"""Signed checkpoints: one per epoch, binding everything sealed so far.

A checkpoint is one line of JSON. Its signed bytes are the line up to (not
including) the fixed ``,"signature":"<128 hex>"}`` suffix, prefixed with
``SIG_CONTEXT``; nothing is re-serialised before checking.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from auditd_py.chain.encoding import (
    SIG_SUFFIX_LEN,
    checkpoint_digest,
    dumps_prefix,
    sign_line,
    split_signed,
)
from auditd_py.chain.format import FORMAT_VERSION, DocumentKind, load_document
from auditd_py.chain.keys import public_key_of, sign, signature_ok
from auditd_py.errors import FormatError

CHECKPOINT_TYPE = "auditd-py.checkpoint"
GENESIS = "genesis"
"""The reason of checkpoint 0, written by keygen over the empty tree (FORMAT.md 12.6)."""
REASONS = frozenset({"interval", "records", "close", GENESIS})
ZERO = bytes(32)
_KIND = DocumentKind(
    CHECKPOINT_TYPE,
    invalid_json="checkpoint is not valid JSON: {exc}",
    not_object="checkpoint is not a JSON object",
    wrong_type="not a checkpoint (type {found!r})",
    bad_version="unsupported checkpoint version {found!r}",
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
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
    signature: bytes = b""
    line: bytes = b""

    @property
    def records(self) -> int:
        return self.seq_end - self.seq_first

    @property
    def digest(self) -> bytes:
        return checkpoint_digest(self.line)

    def body(self) -> bytes:
        return dumps_prefix(
            {
                "v": FORMAT_VERSION,
                "type": CHECKPOINT_TYPE,
                "archive": self.archive,
                "epoch": self.epoch,
                "reason": self.reason,
                "start": self.start,
                "end": self.end,
                "seq_first": self.seq_first,
                "seq_end": self.seq_end,
                "chain_head": self.chain_head.hex(),
                "mac_head": self.mac_head.hex(),
                "merkle_root": self.merkle_root.hex(),
                "prev": self.prev.hex(),
                "public_key": self.public_key.hex(),
                "next_public_key": self.next_public_key.hex(),
            }
        )

    def signed(self, seed: bytes) -> Checkpoint:
        """This checkpoint signed with the epoch's signing seed."""
        if public_key_of(seed) != self.public_key:
            raise FormatError("signing seed does not match the checkpoint's public key")
        body = self.body()
        sig = sign(seed, body)
        return _replace(self, signature=sig, line=sign_line(body, sig).rstrip(b"\n"))

    def signature_valid(self, public_key: bytes) -> bool:
        body, sig = split_signed(self.line)
        return signature_ok(public_key, body, sig)

    @classmethod
    def from_line(cls, line: bytes, *, file: str | None = None) -> Checkpoint:
        if line.endswith(b"\n"):
            line = line[:-1]
        try:
            _, sig = split_signed(line)
        except FormatError as exc:
            raise FormatError(exc.message, file=file, field="signature") from exc
        obj = load_document(line, _KIND, file)
        reason = _get(obj, "reason", str, file)
        if reason not in REASONS:
            raise FormatError(f"unknown checkpoint reason {reason!r}", file=file, field="reason")
        cp = cls(
            archive=_get(obj, "archive", str, file),
            epoch=_nat(obj, "epoch", file),
            reason=reason,
            start=_nat(obj, "start", file),
            end=_nat(obj, "end", file),
            seq_first=_nat(obj, "seq_first", file),
            seq_end=_nat(obj, "seq_end", file),
            chain_head=_hex32(obj, "chain_head", file),
            mac_head=_hex32(obj, "mac_head", file),
            merkle_root=_hex32(obj, "merkle_root", file),
            prev=_hex32(obj, "prev", file),
            public_key=_hex32(obj, "public_key", file),
            next_public_key=_hex32(obj, "next_public_key", file),
            signature=sig,
            line=line,
        )
        if len(line) != len(cp.body()) + SIG_SUFFIX_LEN or not line.startswith(cp.body()):
            # The signed bytes must be exactly the canonical encoding: no extra or
            # reordered keys can ride along unsigned.
            raise FormatError("checkpoint is not in canonical form", file=file)
        return cp


def _replace(cp: Checkpoint, **changes: Any) -> Checkpoint:
    return replace(cp, **changes)


def _get(obj: dict[str, Any], key: str, typ: type, file: str | None) -> Any:
    v = obj.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise FormatError(f"checkpoint field {key!r} missing or mistyped", file=file, field=key)
    return v


def _nat(obj: dict[str, Any], key: str, file: str | None) -> int:
    v = _get(obj, key, int, file)
    if v < 0:
        raise FormatError(f"checkpoint field {key!r} is negative", file=file, field=key)
    return int(v)


def _hex32(obj: dict[str, Any], key: str, file: str | None) -> bytes:
    v = _get(obj, key, str, file)
    try:
        b = bytes.fromhex(v)
    except ValueError as exc:
        raise FormatError(f"checkpoint field {key!r} is not hex", file=file, field=key) from exc
    if len(b) != 32:
        raise FormatError(f"checkpoint field {key!r} is not 32 bytes", file=file, field=key)
    return b
