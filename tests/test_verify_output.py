"""What ``verify`` writes: the failure code and what was verified before it,
``--json`` against its documented schema, ``--junit`` against the JUnit XSD,
``--report`` rendered in a real headless Chromium (docs/VERIFY_OUTPUT.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from auditd_py.chain.encoding import Fields
from auditd_py.chain.format import NS
from auditd_py.store.writer import EpochPolicy
from tests.support.archive import Arc
from tests.support.browser import render
from tests.support.cli import MODES, Archive, keygen, run_cli, seg_ref

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parent.parent / "docs"
XSD = Path(__file__).resolve().parent / "support" / "junit.xsd"
VECTORS = Path(__file__).resolve().parent / "vectors"


@pytest.fixture
def arc(tmp_path: Path) -> Archive:
    """3 segments of 6 records (a header and 5 lines), epochs of 2 records."""
    a = keygen(tmp_path / "a")
    for i in range(3):
        a.seal(*(f"line {i}-{j}".encode() for j in range(5)))
    return a


def broken(a: Archive) -> Archive:
    """Line 3 of the second segment (seq 8) changed: a broken link there."""
    a.edit_line(1, 3, lambda b: b.replace(b"line 1-1", b"line 1-X"))
    return a


def schema() -> dict[str, Any]:
    doc = json.loads((DOCS / "verify-output.schema.json").read_text())
    assert isinstance(doc, dict)
    return doc


def check_schema(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.Draft202012Validator(schema()).validate(doc)


# ---------------------------------------------------------------- people


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_names_its_code_and_what_was_verified_before_it(arc: Archive, mode: str) -> None:
    r = broken(arc).verify(mode)
    assert r.code == 1, str(r)
    assert r.err.startswith(f"auditd-py: integrity failure: broken_link: {seg_ref(1)}, line 3")
    out = r.out.decode().splitlines()
    assert out[0].startswith(f"{arc.root}: FAILED ("), out[0]
    assert out[1].startswith(f"  failure broken_link: {seg_ref(1)}, line 3, seq 8, epoch 5: ")
    # seg 0 (seq 0..5) and seq 6, 7 of seg 1 were accepted; the genesis and epochs 1..4 matched
    assert out[2].startswith(
        "  verified before the failure: 8 records (seq 0..7), 1 of 3 segments, "
        "5 epochs matched their checkpoints, time range 20"
    ), out[2]


def test_a_failure_in_the_checkpoints_verified_nothing(arc: Archive) -> None:
    arc.checkpoint(1).write_bytes(
        arc.checkpoint(1).read_bytes().replace(b'"epoch":1', b'"epoch":7')
    )
    r = arc.verify("public-key")
    assert r.code == 1, str(r)
    assert "verified before the failure: nothing" in r.out.decode(), str(r)


# ---------------------------------------------------------------- --json


@pytest.mark.parametrize("mode", MODES)
def test_json_matches_the_documented_schema(arc: Archive, mode: str) -> None:
    ok = arc.verify_ok(mode)
    check_schema(ok)
    assert (ok["schema"], ok["schema_version"]) == ("auditd-py.verify", 1)
    assert ok["failures"] == []
    assert ok["verified"]["records"] == 18 and ok["verified"]["epochs"] == 10

    r = broken(arc).verify(mode, "--json")
    assert r.code == 1, str(r)
    bad = r.report()
    check_schema(bad)
    assert bad["what"] == "broken_link" and bad["seq"] == 8  # the flat keys, as before
    assert [f["code"] for f in bad["failures"]] == ["broken_link"]
    assert bad["failures"][0]["file"] == seg_ref(1)
    assert bad["verified"]["records"] == 8
    assert bad["verified"]["segments"] == [arc.segment(0).name]


def test_json_of_a_usage_error_matches_the_schema_too(arc: Archive, tmp_path: Path) -> None:
    r = arc.verify("public-key", "--json", "--anchor", str(tmp_path / "none"))
    assert r.code == 2, str(r)
    doc = r.report()
    check_schema(doc)
    assert doc["ok"] is False and doc["failures"] == [] and doc["verified"] is None


def test_the_schema_rejects_what_it_should() -> None:
    """The schema is not vacuous: a document without its version, or a failure
    without its code, does not validate."""
    good = {
        "schema": "auditd-py.verify",
        "schema_version": 1,
        "ok": False,
        "mode": "key",
        "error": "IntegrityError",
        "message": "m",
        "what": "gap",
        "failures": [
            {
                "code": "gap",
                "error": "IntegrityError",
                "message": "m",
                "file": None,
                "line": None,
                "seq": 3,
                "epoch": None,
                "field": None,
            }
        ],
        "verified": None,
    }
    check_schema(good)
    for bad in (
        {k: v for k, v in good.items() if k != "schema_version"},
        {**good, "schema_version": 2},
        {**good, "failures": [{**good["failures"][0], "code": None}]},  # type: ignore[index]
        {**good, "failures": []},
        {k: v for k, v in good.items() if k != "what"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_schema(bad)


def test_the_doc_names_the_schema_and_its_version() -> None:
    text = (DOCS / "VERIFY_OUTPUT.md").read_text()
    assert "verify-output.schema.json" in text
    assert "`auditd-py.verify`, version 1" in text
    assert schema()["properties"]["schema_version"] == {"const": 1}


# ---------------------------------------------------------------- --junit


def junit(a: Archive, tmp_path: Path, code: int) -> ET.Element:
    out = tmp_path / "junit.xml"
    r = a.verify("public-key", "--junit", str(out))
    assert r.code == code, str(r)
    lint = subprocess.run(
        ["xmllint", "--noout", "--schema", str(XSD), str(out)],
        capture_output=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stderr.decode()
    return ET.parse(out).getroot()


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}/{c.get('name')}": c for c in root.iter("testcase")}


def test_junit_of_an_intact_archive(arc: Archive, tmp_path: Path) -> None:
    root = junit(arc, tmp_path, 0)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cs = cases(root)
    segs = [k for k in cs if k.startswith("auditd-py.verify.segments/")]
    assert segs == [f"auditd-py.verify.segments/{p.name}" for p in arc.segment_paths()]
    families = [k.split("/")[1].split(":")[0] for k in cs if "checks/" in k]
    assert families == [
        "identity", "checkpoints", "anchor", "records", "segments", "epochs", "retention",
        "completeness",
    ]  # fmt: skip
    assert suite.get("tests") == str(len(cs)) == str(8 + 3)
    assert suite.get("failures") == "0"
    assert suite.get("skipped") == "1"  # the anchor: none given
    assert not list(root.iter("failure"))


def test_junit_of_a_broken_archive(arc: Archive, tmp_path: Path) -> None:
    root = junit(broken(arc), tmp_path, 1)
    (suite,) = root.findall("testsuite")
    cs = cases(root)
    assert suite.get("failures") == "2"  # the records family and the segment
    rec = next(c for k, c in cs.items() if k.startswith("auditd-py.verify.checks/records:"))
    (fail,) = rec.findall("failure")
    assert fail.get("type") == "broken_link"
    assert f"{seg_ref(1)}, line 3, seq 8" in (fail.get("message") or "")
    segs = [cs[f"auditd-py.verify.segments/{p.name}"] for p in arc.segment_paths()]
    assert [bool(s.findall("failure")) for s in segs] == [False, True, False]
    assert [bool(s.findall("skipped")) for s in segs] == [False, False, True]
    done = next(c for k, c in cs.items() if k.startswith("auditd-py.verify.checks/completeness"))
    assert done.findall("skipped"), "F1/F2 never ran"
    ident = next(c for k, c in cs.items() if k.startswith("auditd-py.verify.checks/identity"))
    assert not list(ident), "the identity passed"


# ---------------------------------------------------------------- --report


def report(a: Archive, tmp_path: Path, code: int, *extra: str) -> Path:
    out = tmp_path / "report.html"
    r = a.verify("public-key", "--report", str(out), *extra)
    assert r.code == code, str(r)
    text = out.read_text()
    # self-contained: nothing to fetch, no script
    assert "<script" not in text and " src=" not in text and " href=" not in text
    assert "Content-Security-Policy" in text
    return out


def test_the_console_check_catches_an_error(tmp_path: Path) -> None:
    """The browser check is not vacuous: a page with a script error shows one."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>nonexistent();</script></body></html>")
    page = render(bad, tmp_path / "profile")
    assert any("nonexistent" in m for m in page.console), page.console


def test_report_of_an_intact_archive_renders(arc: Archive, tmp_path: Path) -> None:
    page = render(report(arc, tmp_path, 0), tmp_path / "profile")
    assert page.console == []
    assert page.by_id("timeline") is not None and page.by_id("timeline")[0] == "svg"  # type: ignore[index]
    assert page.by_id("verdict") is not None
    assert "intact" in page.dom
    assert len(page.with_class("epoch")) == 10  # the genesis too
    assert len(page.with_class("checkpoint")) >= 9
    assert len(page.with_class("segment")) == 3
    assert len(page.with_class("segment-boundary")) == 3
    assert page.with_class("failure") == []


def test_report_marks_the_failure_where_it_is(arc: Archive, tmp_path: Path) -> None:
    page = render(report(broken(arc), tmp_path, 1), tmp_path / "profile")
    assert page.console == []
    assert "FAILED" in page.dom
    (line,) = page.with_class("failure")
    (item,) = page.with_class("failure-item")
    assert item["data-code"] == "broken_link"
    # at seq 8 of 0..18: between segment 1's boundary (seq 6) and segment 2's (seq 12)
    bounds = sorted(float(b["x1"]) for b in page.with_class("segment-boundary"))
    assert bounds[1] < float(line["x1"]) < bounds[2]


def test_report_shows_the_retention_cut(tmp_path: Path) -> None:
    dst = tmp_path / "v2-retained"
    shutil.copytree(VECTORS / "v2-retained", dst)
    out = tmp_path / "retained.html"
    r = run_cli("verify", dst, "--public-key", dst / "keys" / "public-key.json", "--report", out)
    assert r.code == 0, str(r)
    page = render(out, tmp_path / "profile")
    assert page.console == []
    assert len(page.with_class("retention-cut")) == 1
    assert page.with_class("retention"), "the sealed deletion records are marked"


def test_report_shows_clock_jumps_recoveries_and_stale_periods(tmp_path: Path) -> None:
    """Epochs a timer ends every minute, one that ends ten minutes late (stale), a
    clock jump the daemon sealed, and a torn tail the next writer recovered."""
    arc = Arc(tmp_path)
    w = arc.writer(EpochPolicy(interval_ns=60 * NS))
    for i in range(12):
        arc.clock.advance(20 if i != 6 else 600)  # the 7th record comes 10 minutes late
        w.append(Fields(arc.clock.now_ns(), "app", b"line %d" % i))
        w.maybe_end_epoch()
    w.append_meta("clock.jump", "the wall clock jumped back", {"jump_ns": -3600 * NS})
    w.flush()
    w.abandon()
    with arc.segment_paths()[-1].open("ab") as fh:
        fh.write(b'{"seq":99,"epoch":1,"time":12')  # a write cut short by a crash
    arc.seal([b"after the crash"])
    out = tmp_path / "report.html"
    r = run_cli("verify", arc.layout.root, "--public-key", arc.pk_path, "--report", out)
    assert r.code == 0, str(r)
    page = render(out, tmp_path / "profile")
    assert page.console == []
    (jump,) = page.with_class("clock-jump")
    (rec,) = page.with_class("recovery")
    assert page.with_class("stale"), "the late epoch is a stale period"
    assert page.with_class("event-clock-jump") and page.with_class("event-recovery")
    assert "<td>recovered: 29 torn bytes cut from seg-0000000000.jsonl</td>" in page.dom
    assert float(jump["cx"]) < float(rec["cx"])  # sealed in that order
