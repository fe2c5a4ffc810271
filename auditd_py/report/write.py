"""Writing the report files ``verify --junit`` and ``--report`` ask for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from auditd_py.errors import UsageError
from auditd_py.report import html, timeline
from auditd_py.report.junit import junit_xml
from auditd_py.report.outcome import Outcome
from auditd_py.store.verification import ArchiveSource


def write_reports(
    o: Outcome, source: ArchiveSource, *, junit: str | None, html_file: str | None
) -> None:
    """Write the JUnit XML and the HTML page asked for (a write error is a UsageError)."""
    now = datetime.now(UTC).replace(microsecond=0)
    if junit:
        # JUnit's timestamp is a local date-time without a zone (the Ant schema's)
        _write(junit, junit_xml(o, timestamp=now.replace(tzinfo=None).isoformat()))
    if html_file:
        t = timeline.build(source, o)
        _write(html_file, html.page(o, t, generated=now.isoformat()).encode())


def _write(name: str, data: bytes) -> None:
    try:
        Path(name).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {name}: {exc.strerror}", file=name) from exc
