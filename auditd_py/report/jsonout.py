"""``verify --json``: one document, versioned (docs/VERIFY_OUTPUT.md and the JSON
Schema beside it, docs/verify-output.schema.json).

Version 1 keeps every key of the unversioned document before it: on success the
report's keys, on failure the first failure's diagnostics flat at the top level
(``error``, ``message``, ``what``, ``file``, ``line``, ``seq``, ``epoch``,
``field``), and adds ``schema``, ``schema_version``, ``mode``, ``failures`` (every
failure, each with its ``code``) and ``verified`` (how far verification got).
"""

from __future__ import annotations

from typing import Any

from auditd_py.report.outcome import Outcome

SCHEMA = "auditd-py.verify"
SCHEMA_VERSION = 1


def document(o: Outcome, location: str = "archive_dir") -> dict[str, Any]:
    """The ``--json`` document; ``location`` names the key that holds ``o.archive``."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "ok": o.ok,
        location: o.archive,
        "mode": o.mode,
    }
    if o.report is not None and o.ok:
        doc.update(o.report.as_dict())
    if o.failures:
        first = o.failures[0]
        flat = {**first.as_dict(), "what": first.code}
        del flat["code"]
        doc.update({k: v for k, v in flat.items() if v is not None})
    doc["failures"] = [f.as_dict() for f in o.failures]
    r = o.reached
    doc["verified"] = (
        {
            "records": r.records,
            "first_seq": r.first_seq,
            "seq_end": r.seq_end,
            "segments": list(r.segments),
            "segments_listed": len(o.segments),
            "epochs": r.epochs,
            "first_time": r.first_time,
            "last_time": r.last_time,
        }
        if r is not None
        else None
    )
    return doc


def error_document(location: str, archive: str, diagnostics: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document of a run that could not verify (a usage or I/O error, exit 2)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "ok": False,
        location: archive,
        **diagnostics,
        "failures": [],
        "verified": None,
    }
