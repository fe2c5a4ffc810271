"""Readers on hostile archives (issue 14, item 5): bounded memory, regular files only.

A zstd segment that inflates to far more than a record may be, a line longer
than the format's maximum, a segment, checkpoint or ``archive.json`` symlinked
to ``/dev/zero`` or replaced by a FIFO: ``verify``, ``show``, ``prove`` and
``head`` each fail in one line, naming the file, in bounded memory and time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from auditd_py.store.bounded import MAX_RECORD_BYTES
from tests.support.cli import CLI_BIN, Archive, keygen, one_line_error, run_cli
from tests.support.weed import Weed

BOMB_BYTES = 1 << 30
"""What the bomb inflates to: 1 GiB of one line, 64 times the longest record."""


@pytest.fixture
def arc(tmp_path: Path) -> Archive:
    a = keygen(tmp_path / "a")
    a.seal(*[b"line %d" % i for i in range(6)])
    return a


def _bomb(path: Path) -> None:
    """A small zstd file inflating to :data:`BOMB_BYTES` without a newline."""
    chunk = b"A" * (1 << 20)
    with open(path, "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh) as w:
        for _ in range(BOMB_BYTES // len(chunk)):
            w.write(chunk)
    assert path.stat().st_size < 1 << 20


_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _peak_rss(*args: str | Path) -> tuple[int, str, int]:
    """Run the real CLI; (exit code, stderr, peak RSS in bytes of that process alone).

    A fresh interpreter runs it, so that its RUSAGE_CHILDREN is this one command.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(CLI_BIN), *(str(a) for a in args)],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    code, kib = proc.stdout.split()
    return int(code), proc.stderr.decode(), int(kib) * 1024


def _replace_segment_by_bomb(arc: Archive) -> str:
    seg = arc.segment(0)
    _bomb(seg.with_name(seg.name + ".zst"))
    seg.unlink()
    return f"segments/{seg.name}.zst"


def test_zstd_bomb_is_a_format_failure_in_bounded_memory(arc: Archive) -> None:
    name = _replace_segment_by_bomb(arc)
    code, err, peak = _peak_rss("verify", arc.root, "--public-key", arc.public_key)
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert name in err and "line 1" in err and str(MAX_RECORD_BYTES) in err, err
    assert peak < 256 << 20, f"peak RSS {peak >> 20} MiB"
    for mode in ("key", "public-key"):
        one_line_error(arc.verify(mode), 1, name, "line 1", "longer than")
    one_line_error(run_cli("show", arc.root), 1, name, "line 1")
    one_line_error(run_cli("prove", arc.root, "--seq", "2"), 1, name, "longer than")


def test_plain_line_longer_than_the_maximum_names_file_and_line(arc: Archive) -> None:
    lines = arc.lines(0)
    arc.write_lines(0, [*lines[:2], b"x" * (MAX_RECORD_BYTES + 10), *lines[2:]])
    for mode in ("key", "public-key"):
        r = arc.verify(mode, "--json")
        assert r.code == 1, str(r)
        rep = r.report()
        assert (rep["what"], rep["file"], rep["line"]) == (
            "format",
            "segments/seg-0000000000.jsonl",
            3,
        )
    one_line_error(run_cli("show", arc.root), 1, "seg-0000000000.jsonl", "line 3")


@pytest.mark.parametrize("which", ["segment", "checkpoint", "identity"])
def test_files_symlinked_to_dev_zero_are_refused(arc: Archive, which: str) -> None:
    target = {
        "segment": arc.segment(0),
        "checkpoint": arc.checkpoint(0),
        "identity": arc.root / "archive.json",
    }[which]
    target.unlink()
    target.symlink_to("/dev/zero")
    for mode in ("key", "public-key"):
        one_line_error(arc.verify(mode), 2, target.name, "symbolic link")
    if which == "segment":  # show reads neither checkpoints nor archive.json
        one_line_error(run_cli("show", arc.root), 2, "symbolic link")
    if which != "identity":  # nor does prove read archive.json
        one_line_error(run_cli("prove", arc.root, "--seq", "1"), 2, "symbolic link")
    if which == "checkpoint":
        arc.checkpoint(1).unlink()
        arc.checkpoint(2).unlink()  # the latest is the symlink now
        one_line_error(run_cli("head", arc.root), 2, "symbolic link")


def test_checkpoint_longer_than_a_document_may_be(arc: Archive) -> None:
    last = arc.checkpoint_paths()[-1]
    last.write_bytes(b"{" + b" " * (2 << 20) + b"}\n")
    one_line_error(run_cli("head", arc.root), 1, last.name, "longer than")
    one_line_error(arc.verify("public-key"), 1, last.name, "longer than")


@pytest.mark.parametrize("what", ["fifo", "device"])
def test_segment_replaced_by_a_fifo_or_device_does_not_hang(arc: Archive, what: str) -> None:
    seg = arc.segment(0)
    seg.unlink()
    if what == "fifo":
        os.mkfifo(seg)
    else:
        os.mknod(seg, 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero
    kind = "a FIFO" if what == "fifo" else "a character device"
    for args in (
        ("verify", arc.root, "--public-key", arc.public_key),
        ("show", arc.root),
        ("prove", arc.root, "--seq", "1"),
    ):
        code, err, _ = _peak_rss(*args)  # a subprocess with a timeout: a hang fails, not stalls
        assert code == 2 and err.count("\n") == 1, err
        assert seg.name in err and kind in err, err


# ---------------------------------------------------------------- fleet verify


def _upload(s3: Any, bucket: str, arc: Archive, host: str) -> str:
    archive_id = str(orjson.loads((arc.root / "archive.json").read_bytes())["archive"])
    prefix = f"auditd-py/qa/{host}/{archive_id}"
    for p in sorted(arc.root.rglob("*")):
        rel = p.relative_to(arc.root).as_posix()
        if p.is_file() and not rel.startswith("."):
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=p.read_bytes())
    return archive_id


@pytest.mark.integration
def test_fleet_verify_reports_one_hosts_bomb_and_goes_on(tmp_path: Path) -> None:
    kdir = tmp_path / "keys"
    kdir.mkdir()
    bad, good = keygen(tmp_path / "bad"), keygen(tmp_path / "good")
    for a in (bad, good):
        a.seal(*[b"line %d" % i for i in range(6)])
    name = _replace_segment_by_bomb(bad)
    with Weed(tmp_path / "weed") as weed:
        s3 = weed.client()
        bucket = weed.bucket("fleet-bomb", lock=False)
        ids = {host: _upload(s3, bucket, a, host) for host, a in (("a-bad", bad), ("b-good", good))}
        for host, a in (("a-bad", bad), ("b-good", good)):
            shutil.copy(a.public_key, kdir / f"{ids[host]}.key")
        r = subprocess.run(
            [
                *(str(CLI_BIN), "fleet", "verify", f"s3://{bucket}/auditd-py/qa"),
                *("--public-key-dir", str(kdir), "--max-age", "3650d"),
                *("--s3-endpoint", weed.endpoint),
            ],
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, **weed.env()},
        )
    assert r.returncode == 1, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2, r
    assert lines[0].startswith(f"a-bad {ids['a-bad']} FAILED"), lines
    assert name in lines[0] and "longer than" in lines[0], lines
    assert lines[1].startswith(f"b-good {ids['b-good']} OK"), lines
    assert b"2 archive(s), 1 ok, 1 not ok" in r.stderr
