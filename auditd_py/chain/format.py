"""Format-wide constants and the loader of versioned JSON documents (docs/FORMAT.md).

The one home of what several layers must agree on: the format version, the
time unit, the spelling of segment names, and how a versioned document
(``{"v": 1, "type": …}``: archive identity, checkpoint, key files) is parsed and
checked before its own fields are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from auditd_py.chain.encoding import loads_strict
from auditd_py.errors import AuditdError, FormatError

FORMAT_VERSION: Final = 1
"""The ``"v"`` of checkpoints, key files and proofs; record bodies carry no version."""

ARCHIVE_VERSION: Final = 2
"""The ``"v"`` of ``archive.json``: the archive format. Version 2 archives start with
a genesis checkpoint (docs/FORMAT.md 12.6); version 1 archives are refused."""

NS: Final = 1_000_000_000
"""Nanoseconds per second: every time in the format is an integer of nanoseconds."""

_SEGMENT: Final = r"seg-(?P<no>[0-9]{10})\.jsonl"
SEGMENT_NAME: Final = re.compile(_SEGMENT)
"""A segment's logical name (the name its header record carries); group ``no``."""
SEGMENT_FILE: Final = re.compile(rf"(?P<name>{_SEGMENT})(?P<suffix>\.zst|\.gz)?")
"""A segment file: plain, or compressed with zstd (``.zst``) or gzip (``.gz``);
groups ``name`` (the logical name), ``no`` and ``suffix``."""


def segment_name(n: int) -> str:
    return f"seg-{n:010d}.jsonl"


@dataclass(frozen=True, slots=True)
class DocumentKind:
    """One kind of versioned document and the words its loader fails with.

    The messages are per kind (a key file fails as a :class:`KeyFileError`
    without a field, a checkpoint as a :class:`FormatError` naming it) because
    they are part of what the CLI prints. Each is a ``str.format`` template:
    ``{exc}`` the JSON error, ``{found!r}`` the type or version found.
    """

    doc_type: str
    error: type[AuditdError] = FormatError
    invalid_json: str = "not valid JSON: {exc}"
    not_object: str = "not a JSON object"
    not_object_field: str | None = None
    wrong_type: str = "wrong document type {found!r}"
    bad_version: str = "unsupported format version {found!r}"
    fields: bool = True
    """Whether type and version failures name the field (``type``, ``v``)."""
    version: int = FORMAT_VERSION
    """The one ``v`` accepted: the integer itself (not ``true``, not ``1.0``)."""


def load_document(data: bytes, kind: DocumentKind, file: str | None) -> dict[str, Any]:
    """Parse ``data`` (strict JSON, section 1) as an object of ``kind.type`` and version."""
    try:
        obj = loads_strict(data)
    except ValueError as exc:
        raise kind.error(kind.invalid_json.format(exc=exc), file=file) from exc
    if not isinstance(obj, dict):
        raise kind.error(kind.not_object, file=file, field=kind.not_object_field)
    found = obj.get("type")
    if found != kind.doc_type:
        msg = kind.wrong_type.format(found=found)
        raise kind.error(msg, file=file, field="type" if kind.fields else None)
    v = obj.get("v")
    if type(v) is not int or v != kind.version:
        msg = kind.bad_version.format(found=obj.get("v"))
        raise kind.error(msg, file=file, field="v" if kind.fields else None)
    return obj
