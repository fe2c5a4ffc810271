"""Small hostile inputs to the command line (issue 14): one line each, never a traceback."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.cli import Archive, keygen, one_line_error, run_cli

ARC = "0b6c1b2e-8f5d-4c1e-9a3b-2d4e6f8a0c1e"


def test_collect_of_a_record_that_is_a_json_array(tmp_path: Path) -> None:
    log = tmp_path / "collected.log"
    sd = f'[auditd@32473 archive="{ARC}" kind="%s"]'
    log.write_bytes(
        b"".join(
            (
                b"<14>1 2026-01-01T00:00:00Z h auditd-py - - "
                + (sd % k).encode()
                + b" "
                + m
                + b"\n"
                for k, m in (
                    ("identity", b'{"v":1}'),
                    ("record", b'[{"seq":0,"epoch":0}, "segment.opened"]'),
                )
            )
        )
    )
    r = run_cli("collect", log, "--out", tmp_path / "out")
    one_line_error(r, 1, "seq 0", "not a JSON object")


def test_seal_as_the_reserved_meta_source_is_a_usage_error(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "a")
    src = tmp_path / "in.log"
    src.write_bytes(b"hello\n")
    r = run_cli("seal", "--archive", arc.root, "--source", "auditd-py", src)
    one_line_error(r, 2, "reserved")
    assert not list((arc.root / "segments").iterdir())  # nothing was opened to seal into


def test_seal_cuts_a_line_longer_than_a_piece(tmp_path: Path) -> None:
    arc: Archive = keygen(tmp_path / "a")
    piece = 1024 * 1024
    long = b"y" * (2 * piece + 5)
    arc.seal(b"before", long, b"x" * piece, b"after", epoch_records=None)
    arc.verify_ok("public-key")
    recs = [orjson.loads(line) for line in run_cli("show", arc.root, "--json").out.splitlines()]
    got = [(len(r["message"]), (r.get("attrs") or {}).get("split")) for r in recs]
    assert got == [(6, None), (piece, 1), (piece, 1), (5, 1), (piece, None), (5, None)], got
