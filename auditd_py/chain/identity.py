"""The archive identity file (``archive.json``)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from auditd_py.chain.encoding import fingerprint
from auditd_py.chain.format import FORMAT_VERSION, DocumentKind, load_document
from auditd_py.errors import FormatError

IDENTITY_TYPE = "auditd-py.archive"
_KIND = DocumentKind(
    IDENTITY_TYPE,
    invalid_json="archive identity is not valid JSON: {exc}",
    not_object="not an auditd-py archive identity",
    not_object_field="type",
    wrong_type="not an auditd-py archive identity",
)


@dataclass(frozen=True, slots=True)
class Identity:
    archive: str
    host: str
    created: int
    public_key: bytes

    def to_bytes(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "v": FORMAT_VERSION,
                    "type": IDENTITY_TYPE,
                    "archive": self.archive,
                    "host": self.host,
                    "created": self.created,
                    "public_key": self.public_key.hex(),
                    "public_key_fingerprint": fingerprint(self.public_key),
                }
            )
            + b"\n"
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, file: str | None = None) -> Identity:
        obj = load_document(data, _KIND, file)
        try:
            archive, host, created, pk = (
                obj["archive"],
                obj["host"],
                obj["created"],
                obj["public_key"],
            )
            if not (
                isinstance(archive, str)
                and isinstance(host, str)
                and isinstance(pk, str)
                and isinstance(created, int)
                and not isinstance(created, bool)
                and created >= 0
            ):
                raise TypeError("archive, host and public_key must be strings, created an integer")
            ident = cls(archive=archive, host=host, created=created, public_key=bytes.fromhex(pk))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(
                f"archive identity field missing or invalid: {exc}", file=file
            ) from exc
        if len(ident.public_key) != 32:
            raise FormatError("public_key must be 32 bytes", file=file, field="public_key")
        if obj.get("public_key_fingerprint") != fingerprint(ident.public_key):
            raise FormatError(
                "public_key_fingerprint does not match public_key",
                file=file,
                field="public_key_fingerprint",
            )
        return ident
