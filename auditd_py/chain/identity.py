"""The archive identity file (``archive.json``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from auditd_py.chain.encoding import fingerprint
from auditd_py.chain.format import ARCHIVE_VERSION, DocumentKind, load_document
from auditd_py.errors import FormatError

IDENTITY_TYPE = "auditd-py.archive"
_KIND = DocumentKind(
    IDENTITY_TYPE,
    invalid_json="archive identity is not valid JSON: {exc}",
    not_object="not an auditd-py archive identity",
    not_object_field="type",
    wrong_type="not an auditd-py archive identity",
    bad_version="unsupported archive format version {found!r}: this auditd-py reads "
    "version 2 only (a version-1 archive has no genesis checkpoint, so a wipe of it "
    "cannot be told from a new archive; docs/FORMAT.md 5)",
    version=ARCHIVE_VERSION,
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


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
                    "v": ARCHIVE_VERSION,
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
        if not _HEX64.fullmatch(pk):
            raise FormatError(
                "public_key must be 32 bytes of lower-case hex", file=file, field="public_key"
            )
        if obj.get("public_key_fingerprint") != fingerprint(ident.public_key):
            raise FormatError(
                "public_key_fingerprint does not match public_key",
                file=file,
                field="public_key_fingerprint",
            )
        return ident
