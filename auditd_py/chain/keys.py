"""Forward-secure key material (pure: randomness is passed in, nothing is stored).

Two independent one-way chains evolve at every epoch boundary:

* the MAC chain ``m[e+1] = H(0x05 ‖ m[e])``. ``m[0]`` is the secret
  *verification key*: whoever holds it can recompute every epoch's MAC key
  (cost: one hash per epoch) and so check every record's MAC.
* the signing chain ``s[e+1] = H(0x07 ‖ s[e])``; ``s[e]`` is the Ed25519 seed
  that signs checkpoint ``e``. ``s[0]`` never leaves the host and is erased
  after epoch 0; the *public key* is the Ed25519 key of ``s[0]``. Each
  checkpoint names the next epoch's public key, so an auditor walks the chain
  from the public key alone and can forge nothing.

Holding ``m[e]`` and ``s[e]`` (what the host has during epoch ``e``) gives no
way back to earlier keys, because BLAKE2b is one-way.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditd_py.chain.encoding import (
    SIG_CONTEXT,
    TAG_MAC_EVOLVE,
    TAG_SIGN_EVOLVE,
    h,
    loads_strict,
)
from auditd_py.chain.format import FORMAT_VERSION, DocumentKind, load_document
from auditd_py.errors import KeyFileError

VERIFY_KEY_TYPE = "auditd-py.verify-key"
PUBLIC_KEY_TYPE = "auditd-py.public-key"


def evolve_mac_key(key: bytes) -> bytes:
    return h(TAG_MAC_EVOLVE, key)


def evolve_sign_seed(seed: bytes) -> bytes:
    return h(TAG_SIGN_EVOLVE, seed)


def mac_key_at(m0: bytes, epoch: int) -> bytes:
    """The MAC key of ``epoch`` from the verification key (``epoch`` hashes)."""
    k = m0
    for _ in range(epoch):
        k = evolve_mac_key(k)
    return k


def public_key_of(seed: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(SIG_CONTEXT + message)


def signature_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, SIG_CONTEXT + message)
    except (InvalidSignature, ValueError):
        return False
    return True


def same(a: bytes, b: bytes) -> bool:
    """Constant-time equality for MACs, links and keys."""
    return hmac.compare_digest(a, b)


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """The secret verification key: MAC key of epoch 0 plus the public key."""

    archive: str
    mac_key: bytes
    public_key: bytes

    def to_bytes(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "v": FORMAT_VERSION,
                    "type": VERIFY_KEY_TYPE,
                    "archive": self.archive,
                    "mac_key": self.mac_key.hex(),
                    "public_key": self.public_key.hex(),
                }
            )
            + b"\n"
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, file: str | None = None) -> VerifyKey:
        obj = _load(data, VERIFY_KEY_TYPE, file)
        return cls(
            archive=_str(obj, "archive", file),
            mac_key=_hex(obj, "mac_key", 32, file),
            public_key=_hex(obj, "public_key", 32, file),
        )


@dataclass(frozen=True, slots=True)
class PublicKey:
    """What an auditor holds: the Ed25519 public key of epoch 0."""

    archive: str
    public_key: bytes

    def to_bytes(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "v": FORMAT_VERSION,
                    "type": PUBLIC_KEY_TYPE,
                    "archive": self.archive,
                    "public_key": self.public_key.hex(),
                }
            )
            + b"\n"
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, file: str | None = None) -> PublicKey:
        try:
            obj = loads_strict(data)
        except ValueError as exc:
            raise KeyFileError("not a key file (invalid JSON)", file=file) from exc
        if isinstance(obj, dict) and obj.get("type") == VERIFY_KEY_TYPE:
            # A verification key also carries the public key; accept it here.
            vk = VerifyKey.from_bytes(data, file=file)
            return cls(archive=vk.archive, public_key=vk.public_key)
        obj = _load(data, PUBLIC_KEY_TYPE, file)
        return cls(archive=_str(obj, "archive", file), public_key=_hex(obj, "public_key", 32, file))


def _key_kind(kind: str) -> DocumentKind:
    return DocumentKind(
        kind,
        error=KeyFileError,
        invalid_json="not a key file (invalid JSON)",
        not_object="not a key file (not a JSON object)",
        wrong_type=f"expected a key of type {kind!r}, found {{found!r}}",
        bad_version="unsupported key format version {found!r}",
        fields=False,
    )


_KINDS = {k: _key_kind(k) for k in (VERIFY_KEY_TYPE, PUBLIC_KEY_TYPE)}


def _load(data: bytes, kind: str, file: str | None) -> dict[str, Any]:
    return load_document(data, _KINDS[kind], file)


def _str(obj: dict[str, Any], key: str, file: str | None) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise KeyFileError(f"field {key!r} missing or not a string", file=file, field=key)
    return v


def _hex(obj: dict[str, Any], key: str, size: int, file: str | None) -> bytes:
    v = _str(obj, key, file)
    if len(v) != 2 * size or v.strip("0123456789abcdef"):
        raise KeyFileError(
            f"field {key!r} must be {size} bytes of lower-case hex", file=file, field=key
        )
    return bytes.fromhex(v)
