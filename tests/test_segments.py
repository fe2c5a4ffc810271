"""Segment rotation (size, age, epochs) and compression of closed segments."""

from __future__ import annotations

import base64
import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import zstandard

from auditd_py.chain.encoding import Fields, encode_body
from auditd_py.chain.format import NS
from auditd_py.config import load_text
from auditd_py.daemon import sealloop
from auditd_py.daemon.queue import BatchQueue
from auditd_py.daemon.sealloop import NoEvents, RotationPolicy, SealLoop
from auditd_py.daemon.sizebound import fitting, size_bound
from auditd_py.errors import ArchiveError
from auditd_py.store.compress import compress_segment, finish_pending, open_segment
from auditd_py.store.reader import build_proof, check_proof, iter_records
from auditd_py.store.segment import read_header
from auditd_py.store.writer import EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon, show, verify_both, wait_for
from tests.support.syslog import syslog_line

CLI = [sys.executable, "-m", "auditd_py.cli"]


def messages(arc: Arc) -> list[bytes]:
    return [o["message"].encode() for _, o in iter_records(arc.layout) if o["source"] == "test"]


def several_segments(arc: Arc, n: int = 300, every: int = 100) -> list[bytes]:
    """Seal ``n`` records, rotating every ``every``; the writer is closed."""
    w = arc.writer()
    sent = []
    for i in range(n):
        arc.clock.advance(0.001)
        m = syslog_line(i)
        w.append(Fields(arc.clock.now_ns(), "test", m))
        sent.append(m)
        if i % every == every - 1:
            w.rotate_segment("test")
    w.close()
    return sent


# ---------------------------------------------------------------- rotation


def test_sealer_rotates_by_size(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer()
    q = BatchQueue(10_000)
    rotated: list[tuple[str, str]] = []

    class Rotations(NoEvents):
        def rotated(self, prev: str, reason: str, epoch: int) -> None:
            rotated.append((prev, reason))

    s = SealLoop(
        w,
        q,
        Rotations(),
        commit_interval_ns=1_000_000,
        rotation=RotationPolicy(max_bytes=8 * 1024, max_age_ns=3600 * NS),
    )
    s.start()
    sent = [syslog_line(i) for i in range(400)]
    for k in range(0, 400, 20):
        q.put([Fields(arc.clock.now_ns(), "test", m) for m in sent[k : k + 20]])
        time.sleep(0.002)
    s.stop()
    assert s.error is None
    w.close()
    assert len(rotated) >= 3 and {why for _, why in rotated} == {"size"}
    assert s.stats.rotations == len(rotated) and s.stats.max_rotation_pause_ns > 0
    assert len(arc.layout.segment_names()) == len(rotated) + 1
    assert messages(arc) == sent
    for key in (True, False):
        r = arc.verify(key=key, require_sealed=True)
        assert r.unsealed_records == 0


def test_rotation_due_by_age_and_by_epochs(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer(EpochPolicy(interval_ns=3600 * NS))
    by_age = RotationPolicy(max_bytes=1 << 30, max_age_ns=60 * NS)
    by_epochs = RotationPolicy(max_bytes=1 << 30, max_age_ns=3600 * NS * 24, max_epochs=2)
    assert by_age.due(w) is None and by_epochs.due(w) is None
    arc.clock.advance(61)
    assert by_age.due(w) == "age"
    w.rotate_segment("age")
    assert by_age.due(w) is None
    w.end_epoch("interval")
    assert by_epochs.due(w) is None
    w.end_epoch("interval")
    assert by_epochs.due(w) == "epochs"
    w.rotate_segment("epochs")
    assert by_epochs.due(w) is None
    w.append(Fields(arc.clock.now_ns(), "test", b"x"))
    w.close()
    assert len(arc.layout.segment_names()) == 3
    for key in (True, False):
        arc.verify(key=key, require_sealed=True)


def test_rotation_is_postponed_while_the_compressor_holds_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sealer does not wait for the compressor's fsync/rename/unlink to rotate by age:
    it seals on and rotates at a later turn, up to GATE_WAIT_MAX; then it waits, and the
    wait counts in the rotation's pause (reported as p50/p99/max)."""
    monkeypatch.setattr(sealloop, "GATE_WAIT_MAX", 0.3)
    arc = Arc(tmp_path)
    w = arc.writer()
    q = BatchQueue(10_000)
    s = SealLoop(
        w,
        q,
        NoEvents(),
        commit_interval_ns=1_000_000,
        rotation=RotationPolicy(max_bytes=1 << 30, max_age_ns=60 * NS),
    )
    s.io_gate.acquire()  # as the compressor does around its fsync, rename and unlink
    s.start()
    sent = [syslog_line(i) for i in range(120)]
    q.put([Fields(arc.clock.now_ns(), "test", m) for m in sent[:60]])
    assert wait_for(lambda: s.stats.sealed == 60)
    arc.clock.advance(61)  # due by age now
    assert wait_for(lambda: s.stats.rotations_postponed > 0)
    q.put([Fields(arc.clock.now_ns(), "test", m) for m in sent[60:]])
    assert wait_for(lambda: s.stats.sealed == 120)  # sealing went on meanwhile
    assert s.stats.rotations == 0
    time.sleep(0.4)  # past GATE_WAIT_MAX: the sealer waits for the gate
    assert s.stats.rotations == 0
    s.io_gate.release()
    assert wait_for(lambda: s.stats.rotations == 1)
    s.stop()
    assert s.error is None
    w.close()
    p = s.stats.rotation_pause_ms()
    assert 0 < p["p50"] <= p["p99"] <= p["max"] and p["max"] >= 50
    assert len(arc.layout.segment_names()) == 2 and messages(arc) == sent
    for key in (True, False):
        arc.verify(key=key, require_sealed=True)


def _segment_sizes(arc: Arc) -> list[tuple[int, int]]:
    """(bytes, longest record) of each closed segment."""
    out = []
    for name in arc.layout.segment_names()[:-1]:
        with open_segment(arc.layout.segment_path(name)) as fh:
            lines = fh.read().splitlines(keepends=True)
        out.append((sum(map(len, lines)), max(map(len, lines))))
    return out


@pytest.mark.parametrize("gate_held", [False, True])
def test_a_backlog_in_one_batch_closes_each_segment_within_max_bytes_plus_one_record(
    tmp_path: Path, gate_held: bool
) -> None:
    """A restart with a backlog hands the sealer one huge batch: every segment still
    closes at the first record that reaches max_bytes (issue 17, 3), also while the
    compressor holds the gate (a rotation by size waits for it, it is not postponed)."""
    arc = Arc(tmp_path)
    w = arc.writer()
    q = BatchQueue(100_000)
    limit = 8 * 1024
    s = SealLoop(
        w,
        q,
        NoEvents(),
        commit_interval_ns=1_000_000,
        rotation=RotationPolicy(max_bytes=limit, max_age_ns=3600 * NS),
    )
    sent = [syslog_line(i) + b"x" * (i % 7 * 40) for i in range(3000)]
    sent[100:100] = [b"\x00\xff" * 50, b'"\\' * 60]  # escapes and invalid UTF-8: more bytes
    q.put([Fields(arc.clock.now_ns(), "test", m) for m in sent])
    if gate_held:
        s.io_gate.acquire()
    s.start()
    if gate_held:
        time.sleep(0.2)
        assert len(arc.layout.segment_names()) == 1  # waits for the gate, seals no further
        s.io_gate.release()
    assert wait_for(lambda: s.stats.sealed == len(sent))
    s.stop()
    assert s.error is None
    w.close()
    sizes = _segment_sizes(arc)
    assert len(sizes) > 30
    for size, longest in sizes:
        assert limit <= size < limit + longest
    kept = [
        base64.b64decode(o["raw_b64"]) if "raw_b64" in o else o["message"].encode()
        for _, o in iter_records(arc.layout)
        if o["source"] == "test"
    ]
    assert kept == sent
    arc.verify(key=True, require_sealed=True)


def test_compression_holds_the_gate_around_each_device_step(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    several_segments(arc)
    name = arc.layout.segment_names()[0]
    d = arc.layout.segments
    held: list[tuple[bool, bool, bool]] = []  # (temp file, compressed file, plain file)

    class Gate:
        def __enter__(self) -> None:
            held.append(
                (
                    (d / f".{name}.zst.tmp").exists(),
                    (d / f"{name}.zst").exists(),
                    (d / name).exists(),
                )
            )

        def __exit__(self, *exc: object) -> None:
            return None

    compress_segment(arc.layout, name, "zstd", gate=Gate())
    # the temp file's fsync, then its rename (+ fsync of the directory), then the unlink
    assert held == [(True, False, True), (True, False, True), (False, True, True)]
    assert not (d / name).exists() and (d / f"{name}.zst").exists()


def test_segments_config_defaults_and_sizes() -> None:
    cfg = load_text("archive: {path: /a}\n")
    assert cfg.segments.max_bytes == 64 * 1024**2 and cfg.segments.max_age == 3600 * NS
    assert cfg.segments.max_epochs is None and cfg.segments.compress == "zstd"
    cfg = load_text(
        "archive: {path: /a}\nsegments: {max_bytes: 64KiB, max_age: 5m, max_epochs: 3, "
        "compress: gzip}\n"
    )
    assert cfg.segments.max_bytes == 65536 and cfg.segments.max_age == 300 * NS
    assert cfg.segments.max_epochs == 3 and cfg.segments.compress == "gzip"


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("method", ["zstd", "gzip"])
def test_compressed_segments_read_like_plain_ones(tmp_path: Path, method: str) -> None:
    arc = Arc(tmp_path)
    sent = several_segments(arc)
    before = subprocess.run(
        [*CLI, "show", str(arc.layout.root), "--json", "--all"], check=True, capture_output=True
    ).stdout
    names = arc.layout.segment_names()
    plain = sum((arc.layout.segments / n).stat().st_size for n in names)
    for n in names[:-1]:
        c = compress_segment(arc.layout, n, method)  # type: ignore[arg-type]
        assert c.compressed_bytes < c.plain_bytes
    files = sorted(p.name for p in arc.layout.segments.iterdir())
    suffix = ".zst" if method == "zstd" else ".gz"
    assert files == [n + suffix for n in names[:-1]] + [names[-1]]
    assert arc.layout.segment_names() == names
    raw = (arc.layout.segments / (names[0] + suffix)).read_bytes()
    if method == "gzip":
        whole = gzip.decompress(raw)
    else:
        whole = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    assert whole.startswith(b'{"seq":0,')
    after = subprocess.run(
        [*CLI, "show", str(arc.layout.root), "--json", "--all"], check=True, capture_output=True
    ).stdout
    assert after == before and messages(arc) == sent
    for key in (True, False):
        r = arc.verify(key=key, require_sealed=True)
        assert r.records == len(orjson_lines(after))
    verify_both(arc, "--require-sealed")
    compressed = sum(p.stat().st_size for _, p in arc.layout.segment_files())
    assert compressed < plain
    # an inclusion proof of a record in a compressed segment, checked offline
    proof = build_proof(arc.layout, 5)
    assert check_proof(proof, arc.pk.public_key)["seq"] == 5
    out = subprocess.run(
        [*CLI, "prove", str(arc.layout.root), "--seq", "150"], check=True, capture_output=True
    ).stdout
    (tmp_path / "proof.json").write_bytes(out)
    subprocess.run(
        [*CLI, "check-proof", str(tmp_path / "proof.json"), "--public-key", str(arc.pk_path)],
        check=True,
        capture_output=True,
    )
    # the writer continues after compressed segments
    w = arc.writer()
    w.append(Fields(arc.clock.now_ns(), "test", b"after"))
    w.close()
    assert messages(arc) == [*sent, b"after"]
    arc.verify(require_sealed=True)


def orjson_lines(out: bytes) -> list[object]:
    return [orjson.loads(x) for x in out.splitlines()]


def test_open_segment_streams(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    several_segments(arc, 50, 25)
    name = arc.layout.segment_names()[0]
    want = (arc.layout.segments / name).read_bytes().splitlines(keepends=True)
    c = compress_segment(arc.layout, name, "zstd")
    with open_segment(arc.layout.segments / c.file) as fh:
        assert list(fh) == want


@pytest.mark.parametrize("method", ["zstd", "gzip"])
@pytest.mark.parametrize("step", ["tmp", "rename", "done"])
@pytest.mark.parametrize("crash", [True, False])
def test_crash_at_each_step_of_compression(
    tmp_path: Path, method: str, step: str, crash: bool
) -> None:
    """A crash after each step: temp file left, both files, only the compressed one.

    With ``crash`` the writer is also killed (no state save after the rotation), so
    its recovery rolls forward over the (maybe compressed) closed segment.
    """
    arc = Arc(tmp_path)
    w = arc.writer()
    sent = []
    for i in range(60):
        m = syslog_line(i)
        w.append(Fields(arc.clock.now_ns(), "test", m))
        sent.append(m)
    w.rotate_segment("test")
    closed = arc.layout.segment_names()[0]
    for i in range(60, 80):
        m = syslog_line(i)
        w.append(Fields(arc.clock.now_ns(), "test", m))
        sent.append(m)
    crash_after = None if step == "done" else step
    compress_segment(arc.layout, closed, method, crash_after=crash_after)  # type: ignore[arg-type]
    if crash:
        w.flush()
        w.abandon()
    else:
        w.close()
    files = set(p.name for p in arc.layout.segments.iterdir())
    suffix = ".zst" if method == "zstd" else ".gz"
    assert (closed in files) == (step != "done")
    assert (closed + suffix in files) == (step != "tmp")
    for key in (True, False):
        arc.verify(key=key)  # readable at every step
    assert messages(arc) == sent
    # the next start: recovery, then the interrupted compression is finished
    w = arc.writer()
    todo = finish_pending(arc.layout, w.segment)
    assert not any(n.endswith(".tmp") for n in (p.name for p in arc.layout.segments.iterdir()))
    assert (closed in todo) == (step != "done")
    for n in todo:
        compress_segment(arc.layout, n, method)  # type: ignore[arg-type]
    w.append(Fields(arc.clock.now_ns(), "test", b"after"))
    sent.append(b"after")
    w.close()
    files = set(p.name for p in arc.layout.segments.iterdir())
    assert closed not in files and closed + suffix in files
    assert messages(arc) == sent
    for key in (True, False):
        r = arc.verify(key=key, require_sealed=True)
        assert r.unsealed_records == 0


# ---------------------------------------------------------------- the daemon


def daemon_config(arc: Arc, logs: Path, path: Path, compress: str = "zstd") -> Path:
    doc = configs.daemon(
        arc,
        segments={"max_bytes": "64KiB", "compress": compress},
        sources=[configs.file_source(logs)],
    )
    return configs.write(path, doc)


@pytest.mark.integration
def test_daemon_rotates_and_compresses(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    d = Daemon(tmp_path, cfg)
    n = 4000
    try:
        d.ready()
        with (logs / "app.log").open("ab") as fh:
            for k in range(0, n, 500):
                fh.write(b"".join(syslog_line(i) + b"\n" for i in range(k, k + 500)))
                fh.flush()
                time.sleep(0.05)

        def done() -> bool:
            files = [p.name for p in arc.layout.segments.iterdir()]
            plain = [f for f in files if f.endswith(".jsonl")]
            got = [r for r in show(arc) if r["source"] == "app"]
            return len(got) == n and len(plain) == 1

        assert wait_for(done, 30), sorted(p.name for p in arc.layout.segments.iterdir())
    finally:
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    files = sorted(p.name for p in arc.layout.segments.iterdir())
    zst = [f for f in files if f.endswith(".zst")]
    assert len(zst) >= 5 and len(zst) >= len(files) - 2, files
    recs = show(arc)
    assert [r["message"] for r in recs if r["source"] == "app"] == [
        syslog_line(i).decode() for i in range(n)
    ]
    meta = show(arc, "--meta")
    comp = [r for r in meta if r["event"] == "segment.compressed"]
    assert comp and all(int(r["attrs"]["ratio_permille"]) < 500 for r in comp)  # type: ignore[index]
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_daemon_kill9_during_rotation_and_compression(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml", compress="gzip")
    n = 0
    for _round in range(3):
        d = Daemon(tmp_path, cfg)
        d.ready()
        for _ in range(6):
            with (logs / "app.log").open("ab") as fh:
                fh.write(b"".join(syslog_line(i) + b"\n" for i in range(n, n + 400)))
            n += 400
            time.sleep(0.08)
        d.stop(signal.SIGKILL)
    subprocess.run([*CLI, "run", "--config", str(cfg), "--once"], check=True, capture_output=True)
    recs = show(arc)
    assert [r["message"] for r in recs if r["source"] == "app"] == [
        syslog_line(i).decode() for i in range(n)
    ]
    assert not any(p.name.endswith(".tmp") for p in arc.layout.segments.iterdir())
    assert len(arc.layout.segment_names()) >= 5
    assert any(p.name.endswith(".gz") for p in arc.layout.segments.iterdir())
    verify_both(arc)


def test_fitting_chunks_never_cross_the_room_they_are_given() -> None:
    """sizebound: the chunk's records, sealed, take at most the room (unless it is one)."""
    big = 10**19
    run = [
        Fields(big, "s" * (i % 5 + 1), bytes(range(i % 256)) * (i % 3), "ev" if i % 4 else None)
        for i in range(200)
    ]
    run += [Fields(big, "x", b'"\\', None, {"k": "\x00" * 9}, None) for _ in range(20)]
    run += [Fields(big, "y", b"\x01" * 50, "e", None, b'{"pos":1}') for _ in range(20)]
    sizes = [len(encode_body(10**19, 10**19, f)) + 149 for f in run]
    assert all(s <= size_bound(f) for s, f in zip(sizes, run, strict=True))
    for room in (0, 100, 1000, 5000, 40_000):
        i = 0
        while i < len(run):
            j = fitting(run, i, room)
            assert j > i and (j == i + 1 or sum(sizes[i:j]) <= room)
            i = j


@pytest.mark.parametrize("data", [b"", b"\x28\xb5\x2f\xfd"], ids=["empty", "cut"])
def test_damaged_compressed_header_is_an_archive_error(tmp_path: Path, data: bytes) -> None:
    """FORMAT.md 11.4: readers outside verify see a damaged stream as an error too."""
    p = tmp_path / "seg-0000000000.jsonl.zst"
    p.write_bytes(data)
    with pytest.raises(ArchiveError, match="decompress"):
        read_header(p, "seg-0000000000.jsonl")
