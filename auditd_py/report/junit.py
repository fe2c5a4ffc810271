"""``verify --junit FILE``: the verification as JUnit XML, for CI pipelines.

One ``<testsuite>`` per verification, holding one ``<testcase>`` per check
family (:data:`~auditd_py.report.outcome.FAMILIES`, classname
``auditd-py.verify.checks``) and one per segment (classname
``auditd-py.verify.segments``). A failed check is a ``<failure>`` whose ``type``
is the failure code; a check the verification never reached (it stops at the
first failure) is ``<skipped>``. The shape is the one Jenkins' JUnit plugin,
GitLab's test reports and GitHub Actions' test reporters read (testsuites →
testsuite → testcase → failure/skipped, counts on the suite).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from auditd_py.report.outcome import FAMILIES, Finding, Outcome, stage_of
from auditd_py.report.summary import error_line, reached_line

CHECKS = "auditd-py.verify.checks"
SEGMENTS = "auditd-py.verify.segments"
_NOT_REACHED = "not reached: verification stopped at an earlier failure"


@dataclass(frozen=True, slots=True)
class Case:
    classname: str
    name: str
    seconds: float = 0.0
    failures: tuple[Finding, ...] = ()
    skipped: str | None = None


def cases(o: Outcome) -> list[Case]:
    """The test cases of an outcome: every check family, then every segment."""
    first_stage = min((stage_of(f.family) for f in o.failures), default=99)
    out = []
    families = [(n, d) for n, d, _ in FAMILIES]
    if any(f.family not in {n for n, _ in families} for f in o.failures):
        families.append(("archive", "other checks"))
    for name, what in families:
        mine = tuple(f for f in o.failures if f.family == name)
        skipped = None
        if name == "anchor" and not o.anchored:
            skipped = "no anchor given (--anchor FILE or --anchor-from)"
        elif not mine and stage_of(name) >= first_stage:
            skipped = _NOT_REACHED
        out.append(Case(CHECKS, f"{name}: {what}", failures=mine, skipped=skipped))
    done = set(o.reached.segments) if o.reached is not None else set()
    for seg in o.segments:
        mine = tuple(f for f in o.failures if f.file == f"segments/{seg}")
        skipped = None if mine or seg in done else _NOT_REACHED
        out.append(
            Case(SEGMENTS, seg, seconds=o.seconds.get(seg, 0.0), failures=mine, skipped=skipped)
        )
    return out


def junit_xml(o: Outcome, *, timestamp: str) -> bytes:
    """The JUnit XML document (UTF-8, with its declaration)."""
    cs = cases(o)
    failed = sum(1 for c in cs if c.failures)
    skipped = sum(1 for c in cs if c.skipped is not None and not c.failures)
    total = round(sum(c.seconds for c in cs), 6)
    root = ET.Element(
        "testsuites",
        name="auditd-py verify",
        tests=str(len(cs)),
        failures=str(failed),
        errors="0",
        skipped=str(skipped),
        time=f"{total:.6f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"auditd-py verify {o.archive}",
        tests=str(len(cs)),
        failures=str(failed),
        errors="0",
        skipped=str(skipped),
        time=f"{total:.6f}",
        timestamp=timestamp,
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (("archive", o.archive), ("mode", o.mode), ("ok", str(o.ok).lower())):
        ET.SubElement(props, "property", name=k, value=v)
    for c in cs:
        tc = ET.SubElement(
            suite, "testcase", classname=c.classname, name=c.name, time=f"{c.seconds:.6f}"
        )
        for f in c.failures:
            el = ET.SubElement(tc, "failure", message=error_line(f), type=f.code)
            el.text = f"{error_line(f)}\n{reached_line(o.reached, len(o.segments)).strip()}\n"
        if c.skipped is not None and not c.failures:
            ET.SubElement(tc, "skipped", message=c.skipped)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
