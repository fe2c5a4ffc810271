"""Retention: policies, sealed deletions, verification across the cut, proofs."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditd_py.chain.encoding import Fields
from auditd_py.chain.format import NS
from auditd_py.errors import ArchiveError, IntegrityError, ProofError
from auditd_py.store.layout import Layout
from auditd_py.store.reader import build_proof, check_proof, iter_records, verify_archive
from auditd_py.store.retention import (
    RetentionPolicy,
    SegmentInfo,
    plan,
)
from auditd_py.store.segment import Header
from auditd_py.store.writer import ArchiveWriter, EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import (
    CLI,
    Daemon,
    app_messages,
    assert_suffix_exactly_once,
    show,
    verify_both,
    wait_for,
)
from tests.support.syslog import syslog_line


def build(arc: Arc, n: int = 300, every: int = 60, max_records: int | None = 7) -> ArchiveWriter:
    """An open writer after ``n`` records, rotating every ``every``."""
    w = arc.writer(EpochPolicy(max_records=max_records))
    for i in range(n):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "test", b"line %d" % i))
        if i % every == every - 1:
            w.rotate_segment("test")
    return w


def both(arc: Arc, **kw: object) -> None:
    for key in (True, False):
        arc.verify(key=key, **kw)


def fails(arc: Arc, what: str) -> IntegrityError:
    err: IntegrityError | None = None
    for key in (True, False):
        with pytest.raises(IntegrityError) as ei:
            arc.verify(key=key)
        assert ei.value.where.get("what") == what, ei.value
        err = ei.value
    assert err is not None
    return err


def data(arc: Arc) -> list[str]:
    return [str(o["message"]) for _, o in iter_records(arc.layout) if o["source"] == "test"]


# ---------------------------------------------------------------- the writer and verify


def test_retired_archive_verifies_and_keeps_proofs(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc)
    first, second = arc.layout.segment_names()[:2]
    a = w.retire_segment(first, policy="max_segments", detail="test")
    b = w.retire_segment(second, policy="max_age", detail="test")
    w.close()
    assert a["seq_first"] == 0 and a["seq_end"] == b["seq_first"]
    assert not (arc.layout.segments / first).exists()
    for key in (True, False):
        rep = arc.verify(key=key)
        assert rep.first_seq == b["seq_end"]
        assert [r["segment"] for r in rep.retention] == [first, second]
        assert [r["policy"] for r in rep.retention] == ["max_segments", "max_age"]
    # every record still present has a proof against the latest checkpoint
    start = int(str(b["seq_end"]))
    last = int(orjson.loads(arc.layout.checkpoint_files()[-1][1])["seq_end"])
    for seq in (start, start + 1, (start + last) // 2, last - 1):
        assert check_proof(build_proof(arc.layout, seq), arc.pk.public_key)["seq"] == seq
    with pytest.raises(ProofError, match="deleted by retention"):
        build_proof(arc.layout, start - 1)
    assert data(arc)[0] == "line 120"  # two segments of 60 lines each are gone


def test_deletion_is_sealed_before_the_file_goes(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    name = arc.layout.segment_names()[0]
    w.retire_segment(name, policy="max_segments", detail="3 segments > 2")
    w.abandon()  # as a crash right after: the record must already be durable
    recs = [o for _, o in iter_records(arc.layout) if o.get("event") == "retention.deleted"]
    assert len(recs) == 1
    attrs = recs[0]["attrs"]
    assert attrs["segment"] == name and attrs["policy"] == "max_segments"
    assert attrs["reason"] == "3 segments > 2"
    assert set(attrs) >= {"seq_first", "seq_end", "last_link", "last_mac", "merkle_range"}
    assert attrs["checkpoint"]["epoch"] >= 0 and len(attrs["checkpoint"]["digest"]) == 64
    w2 = arc.writer()  # recovery rolls over the record; the archive stays valid
    w2.close()
    both(arc)


def _spec_table(section: str) -> list[str]:
    """The keys of the first table in ``section`` of docs/FORMAT.md, in order."""
    doc = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()
    keys: list[str] = []
    for ln in doc[doc.index(section) :].splitlines()[1:]:
        if ln.startswith("| `"):
            keys.append(ln.split("`")[1])
        elif keys:
            break
    return keys


def test_retention_record_fields_are_exactly_the_specs(tmp_path: Path) -> None:
    """FORMAT.md 16.3 (issue 17, 5): the sealed record, what the writer hands the meta-log
    and the spec name the same fields, in the same order, with the same shapes."""
    spec = _spec_table("### 16.3 The `retention.deleted` record")
    assert spec[:3] == ["segment", "file", "bytes"] and spec[-2:] == ["undelivered", "history"]
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    told = w.retire_segment(arc.layout.segment_names()[0], policy="max_age", detail="old")
    w.close()
    (rec,) = [o for _, o in iter_records(arc.layout) if o.get("event") == "retention.deleted"]
    assert list(rec["attrs"]) == spec
    assert told == rec["attrs"]  # the daemon logs exactly these (narrator.retired)
    assert list(rec["attrs"]["checkpoint"]) == ["epoch", "digest"]
    assert list(rec["attrs"]["history"]) == ["count", "digest"]
    assert rec["attrs"]["undelivered"] is False
    assert rec["attrs"]["history"] == {"count": 0, "digest": "00" * 32}
    line = arc.layout.deletions.read_bytes()
    assert orjson.loads(line) == rec and line.count(b"\n") == 1


def test_interrupted_deletion_is_completed_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    name = arc.layout.segment_names()[0]
    monkeypatch.setattr(ArchiveWriter, "_unlink_segment", lambda self, n: None)
    w.retire_segment(name, policy="max_segments", detail="crash before unlink")
    w.abandon()
    monkeypatch.undo()
    assert (arc.layout.segments / name).exists()
    rep = arc.verify()
    assert any("deletion was interrupted" in x for x in rep.warnings), rep.warnings
    w2 = arc.writer()
    assert not (arc.layout.segments / name).exists()  # completed by the next writer
    w2.close()
    both(arc)


def test_only_the_oldest_closed_segment_can_go(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    names = arc.layout.segment_names()
    with pytest.raises(ArchiveError, match="oldest closed"):
        w.retire_segment(names[1], policy="max_segments", detail="x")
    with pytest.raises(ArchiveError, match="oldest closed"):
        w.retire_segment(names[-1], policy="max_segments", detail="x")
    w.close()


def test_reserved_event_cannot_be_forged_through_append_meta(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=10)
    with pytest.raises(Exception, match="written by the archive itself"):
        w.append_meta("retention.deleted", "x", {"segment": "seg-0000000000.jsonl"})
    w.close()


# ---------------------------------------------------------------- attacks


def test_deleting_the_oldest_segment_without_a_record_fails(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    build(arc).close()
    first = arc.layout.segment_names()[0]
    (arc.layout.segments / first).unlink()
    err = fails(arc, "missing_segment")
    assert err.where["file"].endswith(arc.layout.segment_names()[0])
    assert err.where["line"] == 1
    assert "no sealed retention record" in err.message


def test_deleting_more_than_retention_did_fails(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc)
    w.retire_segment(arc.layout.segment_names()[0], policy="max_segments", detail="x")
    w.close()
    both(arc)
    (arc.layout.segments / arc.layout.segment_names()[0]).unlink()
    fails(arc, "missing_segment")


def test_deleting_a_middle_segment_of_a_retained_archive_fails(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc)
    w.retire_segment(arc.layout.segment_names()[0], policy="max_segments", detail="x")
    w.close()
    (arc.layout.segments / arc.layout.segment_names()[2]).unlink()
    fails(arc, "missing_segment")


def test_truncating_the_newest_epochs_of_a_retained_archive_fails(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc)
    w.retire_segment(arc.layout.segment_names()[0], policy="max_segments", detail="x")
    w.rotate_segment("test")  # the deletion record stays in a segment that is kept
    for i in range(20):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "test", b"more %d" % i))
    w.close()
    last = arc.layout.segments / arc.layout.segment_names()[-1]
    last.unlink()
    fails(arc, "truncated")


def test_rewritten_cut_in_the_first_header_fails(tmp_path: Path) -> None:
    """An attacker who deletes records and edits the first kept header to resume elsewhere."""
    arc = Arc(tmp_path)
    w = build(arc)
    w.retire_segment(arc.layout.segment_names()[0], policy="max_segments", detail="x")
    w.close()
    path = arc.layout.segments / arc.layout.segment_names()[0]
    lines = path.read_bytes().split(b"\n")
    hdr = orjson.loads(lines[0])
    hdr["attrs"]["prev_mac"] = "00" * 32
    body = orjson.dumps({k: v for k, v in hdr.items() if k not in ("link", "mac")})
    lines[0] = body[:-1] + lines[0][-148:]
    path.write_bytes(b"\n".join(lines))
    for key in (True, False):
        with pytest.raises(IntegrityError):
            arc.verify(key=key)


def test_retention_record_for_a_present_segment_must_match_it(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    first = arc.layout.segment_names()[0]
    cp = w.covering_checkpoint(1)
    w._seal(  # a writer bug (or forgery with the current key): a record that lies
        Fields(
            arc.clock.now_ns(),
            "auditd-py",
            b"retention deleted",
            "retention.deleted",
            {
                "segment": first,
                "file": first,
                "bytes": 1,
                "seq_first": 0,
                "seq_end": 5,
                "last_link": "00" * 32,
                "last_mac": "00" * 32,
                "merkle_range": ["00" * 32, "00" * 32],
                "checkpoint": {"epoch": cp.epoch, "digest": cp.digest.hex()},
                "policy": "max_segments",
                "reason": "x",
            },
        )
    )
    w.close()
    fails(arc, "retention")


# ---------------------------------------------------------------- plan (pure)


def _segs(
    n: int, *, size: int = 100, step_ns: int = NS, resumable: bool = True
) -> list[SegmentInfo]:
    out = []
    for i in range(n):
        name = f"seg-{i:010d}.jsonl"
        h = Header(
            name,
            seq=i * 10,
            time_ns=i * step_ns,
            prev_segment=f"seg-{i - 1:010d}.jsonl" if i else None,
            prev_link="00" * 32,
            prev_mac="00" * 32 if resumable else None,
            merkle_range=() if resumable else None,
        )
        out.append(SegmentInfo(name, Path(name), size, h))
    return out


def test_plan_limits() -> None:
    segs = _segs(6)
    kw = {"now_ns": 10 * NS, "sealed_end": 1000}
    todo, blocked = plan(segs, RetentionPolicy(max_segments=4), **kw)  # type: ignore[arg-type]
    assert [d.name for d in todo] == [segs[0].name, segs[1].name] and blocked is None
    assert {d.policy for d in todo} == {"max_segments"}
    todo, _ = plan(segs, RetentionPolicy(max_total_bytes=350), **kw)  # type: ignore[arg-type]
    assert len(todo) == 3 and todo[0].policy == "max_total_bytes"
    # max_age: closed = the next segment's header time; now = 10 s
    todo, _ = plan(segs, RetentionPolicy(max_age_ns=7 * NS), **kw)  # type: ignore[arg-type]
    assert [d.name for d in todo] == [segs[0].name, segs[1].name]
    todo, _ = plan(segs, RetentionPolicy(min_free_bytes=1000), free_bytes=750, **kw)  # type: ignore[arg-type]
    assert len(todo) == 3 and todo[-1].policy == "min_free_bytes"
    todo, _ = plan(segs, RetentionPolicy(), free_bytes=0, need_free_bytes=150, **kw)  # type: ignore[arg-type]
    assert len(todo) == 2 and todo[0].policy == "disk_pressure"
    todo, _ = plan(segs, RetentionPolicy(), **kw)  # type: ignore[arg-type]
    assert todo == []
    # the open segment is never deleted, whatever the limit says
    todo, _ = plan(segs, RetentionPolicy(max_segments=1, max_total_bytes=1), **kw)  # type: ignore[arg-type]
    assert len(todo) == 5


def test_plan_stops_at_the_first_segment_it_may_not_delete() -> None:
    segs = _segs(6)
    pol = RetentionPolicy(max_segments=1)
    todo, blocked = plan(segs, pol, now_ns=0, sealed_end=25)
    assert [d.name for d in todo] == [segs[0].name, segs[1].name]
    assert blocked is not None and blocked.name == segs[2].name
    assert "not all checkpointed" in blocked.reason
    todo, blocked = plan(segs, pol, now_ns=0, sealed_end=1000, floor=15)
    assert [d.name for d in todo] == [segs[0].name]
    assert blocked is not None and "forwarder" in blocked.reason
    todo, blocked = plan(segs, pol, now_ns=0, sealed_end=1000, busy=lambda n: n == segs[1].name)
    assert len(todo) == 1 and blocked is not None and "compressed" in blocked.reason
    old = _segs(3, resumable=False)
    todo, blocked = plan(old, pol, now_ns=0, sealed_end=1000)
    assert todo == [] and blocked is not None and "header" in blocked.reason
    todo, blocked = plan(
        segs, RetentionPolicy(max_segments=1, keep_forever=True), now_ns=0, sealed_end=1000
    )
    assert todo == [] and blocked is None


# ---------------------------------------------------------------- properties


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=20, max_value=160),
    every=st.integers(min_value=5, max_value=40),
    max_records=st.one_of(st.none(), st.integers(min_value=1, max_value=9)),
    drop=st.integers(min_value=0, max_value=6),
    extra=st.booleans(),
)
def test_any_retained_prefix_verifies_and_only_it(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    every: int,
    max_records: int | None,
    drop: int,
    extra: bool,
) -> None:
    arc = Arc(tmp_path_factory.mktemp("p"))
    w = build(arc, n=n, every=every, max_records=max_records)
    w.end_epoch("interval")
    closed = arc.layout.segment_names()[:-1]
    for name in closed[:drop]:
        w.retire_segment(name, policy="max_segments", detail="property")
    w.close()
    rep = arc.verify()
    dropped = min(drop, len(closed))
    assert len(rep.retention) == dropped
    assert rep.first_seq == (0 if dropped == 0 else rep.retention[-1]["seq_end"])
    arc.verify(key=False)
    last = int(orjson.loads(arc.layout.checkpoint_files()[-1][1])["seq_end"])
    for seq in {rep.first_seq, (rep.first_seq + last) // 2, last - 1}:
        check_proof(build_proof(arc.layout, seq), arc.pk.public_key)
    if extra and len(arc.layout.segment_names()) > 1:
        (arc.layout.segments / arc.layout.segment_names()[0]).unlink()
        for key in (True, False):
            with pytest.raises(IntegrityError):
                arc.verify(key=key)


# ---------------------------------------------------------------- the daemon


def retention_config(arc: Arc, logs: Path, path: Path) -> Path:
    doc = configs.daemon(
        arc,
        segments={"max_bytes": "32KiB", "compress": "zstd"},
        retention={"max_segments": 4, "check_interval": "200ms"},
        sources=[configs.file_source(logs)],
    )
    return configs.write(path, doc)


@pytest.mark.integration
def test_daemon_applies_retention_and_seals_each_deletion(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = retention_config(arc, logs, tmp_path / "d.yaml")
    d = Daemon(tmp_path, cfg)
    n = 3000
    try:
        d.ready()
        with (logs / "app.log").open("ab") as fh:
            for k in range(0, n, 300):
                fh.write(b"".join(syslog_line(i) + b"\n" for i in range(k, k + 300)))
                fh.flush()
                time.sleep(0.05)

        def settled() -> bool:
            got = app_messages(arc)
            return (
                bool(got)
                and got[-1] == syslog_line(n - 1).decode()
                and len(arc.layout.segment_names()) <= 4
            )

        assert wait_for(settled, 40), arc.layout.segment_names()
    finally:
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    assert len(arc.layout.segment_names()) <= 5  # the stop may have rotated once more
    assert_suffix_exactly_once(app_messages(arc), n)
    meta = show(arc, "--meta")
    deleted = [r for r in meta if r["event"] == "retention.deleted"]
    assert deleted and all(r["attrs"]["policy"] == "max_segments" for r in deleted)  # type: ignore[index]
    verify_both(arc, "--require-sealed")
    r = subprocess.run(
        [*CLI, "verify", str(arc.layout.root), "--key", str(arc.vk_path), "--json"],
        capture_output=True,
        check=True,
    )
    rep = orjson.loads(r.stdout)
    assert rep["first_seq"] > 0 and len(rep["retention"]) >= 1
    log = (tmp_path / "daemon.stderr").read_text()
    told = [
        o
        for o in (orjson.loads(x) for x in log.splitlines() if x.startswith("{"))
        if o.get("event") == "retention.deleted"
    ]
    # The meta-log carries the sealed attrs as its fields (FORMAT.md 16.3, issue 17 5).
    spec = _spec_table("### 16.3 The `retention.deleted` record")
    assert told and all(set(spec) <= set(o) for o in told)
    assert all(list(o["checkpoint"]) == ["epoch", "digest"] for o in told)
    sealed = {r["attrs"]["segment"]: r["attrs"] for r in deleted}  # type: ignore[index]
    for o in told:
        if o["segment"] in sealed:
            assert {k: o[k] for k in spec} == sealed[o["segment"]]


@pytest.mark.integration
@pytest.mark.soak
def test_kill9_during_rotation_compression_and_retention_soak(tmp_path: Path) -> None:
    kill_loop(tmp_path, rounds=40)


@pytest.mark.integration
def test_kill9_during_rotation_compression_and_retention(tmp_path: Path) -> None:
    kill_loop(tmp_path, rounds=6)


def kill_loop(tmp_path: Path, rounds: int) -> None:
    """SIGKILL at random moments while segments rotate, compress and are deleted."""
    import random

    rng = random.Random(7)
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = retention_config(arc, logs, tmp_path / "d.yaml")
    n = 0
    for _ in range(rounds):
        d = Daemon(tmp_path, cfg)
        d.ready()
        for _ in range(rng.randint(1, 6)):
            with (logs / "app.log").open("ab") as fh:
                fh.write(b"".join(syslog_line(i) + b"\n" for i in range(n, n + 300)))
            n += 300
            time.sleep(rng.uniform(0.01, 0.15))
        d.stop(signal.SIGKILL)
    # A last, clean run: it reads what is left and retention catches up with the
    # rotations (a segment closes within max_bytes, so a backlog makes several).
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()

        def settled() -> bool:
            got = app_messages(arc)
            done = bool(got) and got[-1] == syslog_line(n - 1).decode()
            return done and len(arc.layout.segment_names()) <= 4

        assert wait_for(settled, 60), arc.layout.segment_names()
    finally:
        assert d.stop() == 0
    assert_suffix_exactly_once(app_messages(arc), n)
    assert not any(p.name.endswith(".tmp") for p in arc.layout.segments.iterdir())
    assert len(arc.layout.segment_names()) <= 5  # the stop may have rotated once more
    verify_both(arc)
    # Every deletion since keygen is listed, although most deletion records were
    # themselves retired with their segments (deletions.jsonl, FORMAT.md 16.4).
    r = subprocess.run(
        [*CLI, "verify", str(arc.layout.root), "--key", str(arc.vk_path), "--json"],
        capture_output=True,
        check=True,
    )
    rep = orjson.loads(r.stdout)
    gone = rep["retention"]
    assert len(gone) >= 3 and not all(x["in_archive"] for x in gone)
    assert gone[0]["seq_first"] == 0 and gone[-1]["seq_end"] == rep["first_seq"]
    assert all(
        a["seq_end"] == b["seq_first"] or a["segment"] == b["segment"]  # a retry
        for a, b in itertools.pairwise(gone)
    )
    meta = show(arc, "--meta")
    compressed = any(x["file"].endswith(".zst") for x in gone) or any(
        r["event"] == "segment.compressed" for r in meta
    )
    assert compressed or any(p.name.endswith(".zst") for p in arc.layout.segments.iterdir())


def test_layout_helpers_see_a_retained_archive(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    w.retire_segment(arc.layout.segment_names()[0], policy="max_segments", detail="x")
    w.close()
    copy = tmp_path / "copy"
    shutil.copytree(arc.layout.root, copy)
    rep = verify_archive(Layout.at(copy), public_key=arc.pk.public_key)
    assert rep.first_seq > 0 and rep.records == rep.sealed_records


def test_a_failing_deletion_does_not_stop_sealing(tmp_path: Path) -> None:
    """Retention that cannot delete (say, a flag it may not lift) is reported, not fatal."""
    from auditd_py.daemon.queue import BatchQueue
    from auditd_py.daemon.sealloop import NoEvents, SealLoop
    from auditd_py.store.retention import Blocked, Retainer

    class Refusing(Retainer):
        def run(self, writer: ArchiveWriter, **kw: object) -> tuple[list[dict[str, object]], None]:
            raise ArchiveError("cannot unlink: Operation not permitted", file="segments/x")

    arc = Arc(tmp_path)
    w = arc.writer()
    q = BatchQueue(1000)
    seen: list[Blocked] = []
    errors: list[BaseException] = []

    class Told(NoEvents):
        def failed(self, exc: BaseException) -> None:
            errors.append(exc)

        def retention_blocked(self, blocked: Blocked) -> None:
            seen.append(blocked)

    s = SealLoop(
        w,
        q,
        Told(),
        commit_interval_ns=10**7,
        retainer=Refusing(arc.layout, RetentionPolicy(max_segments=1)),
        retention_interval_ns=10**8,
    )
    s.start()
    q.put([Fields(arc.clock.now_ns(), "test", b"one")])
    assert wait_for(lambda: bool(seen), 5)
    q.put([Fields(arc.clock.now_ns(), "test", b"two")])
    s.stop()
    w.close()
    assert not errors and s.stats.sealed == 2
    assert seen[0].policy == "error" and "not permitted" in seen[0].reason
    arc.verify()


def test_forwarders_hold_retention_back_but_a_disk_action_overrides_them(tmp_path: Path) -> None:
    from auditd_py.store.retention import Retainer

    arc = Arc(tmp_path)
    w = build(arc, n=200, every=50)
    w.end_epoch("interval")
    held = Retainer(arc.layout, RetentionPolicy(max_segments=1), floor=lambda: 0)
    done, blocked = held.run(w)
    assert done == [] and blocked is not None and "forwarder" in blocked.reason
    closed = len(arc.layout.segment_names()) - 1
    forced = Retainer(arc.layout, RetentionPolicy(), floor=lambda: 0)
    done, _ = forced.run(w, need_free=1 << 62)  # a disk action that wants everything it may
    assert len(done) == closed >= 3 and all(d["undelivered"] for d in done)
    w.close()
    recs = [o for _, o in iter_records(arc.layout) if o.get("event") == "retention.deleted"]
    assert recs and all("not yet forwarded" in r["attrs"]["reason"] for r in recs)
    for key in (True, False):
        arc.verify(key=key)


@pytest.fixture(scope="module")
def long_retained(tmp_path_factory: pytest.TempPathFactory) -> Arc:
    """Four deletions; the first three records were retired with the segment holding them."""
    arc = Arc(tmp_path_factory.mktemp("history"))
    w = build(arc, n=180, every=60)  # seg-0..2 closed, seg-3 open
    for name in arc.layout.segment_names()[:3]:
        w.retire_segment(name, policy="max_segments", detail=f"property {name}")
    for _ in range(2):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "test", b"after"))
        w.rotate_segment("test")
    w.retire_segment(arc.layout.segment_names()[0], policy="max_age", detail="property")
    w.close()
    return arc


def _edit(lines: list[bytes], kind: str, i: int, j: int, pos: int, byte: int) -> list[bytes]:
    i, j = i % len(lines), j % len(lines)
    if kind == "drop":
        return lines[:i] + lines[i + 1 :]
    if kind == "duplicate":
        return [*lines[: i + 1], lines[i], *lines[i + 1 :]]
    if kind == "swap" and i != j:
        out = list(lines)
        out[i], out[j] = out[j], out[i]
        return out
    line = bytearray(lines[i])
    p = pos % len(line)
    line[p] = byte if byte != line[p] else (byte + 1) % 256 or 1
    if line[p] == 0x0A:
        line[p] = 0x20
    return [*lines[:i], bytes(line), *lines[i + 1 :]]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["drop", "duplicate", "swap", "flip"]),
    i=st.integers(min_value=0, max_value=3),
    j=st.integers(min_value=0, max_value=3),
    pos=st.integers(min_value=0, max_value=10_000),
    byte=st.integers(min_value=1, max_value=255),
)
def test_any_edit_of_the_deletion_history_fails(
    long_retained: Arc, kind: str, i: int, j: int, pos: int, byte: int
) -> None:
    """FORMAT.md 16.4: every deletion since keygen is listed; any edit of deletions.jsonl
    (an entry dropped, duplicated, swapped or changed in any byte) fails verification."""
    arc = long_retained
    path = arc.layout.deletions
    good = path.read_bytes()
    lines = good.splitlines()
    rep = arc.verify(key=False)
    assert [x["in_archive"] for x in rep.retention] == [False, False, False, True]
    assert rep.retention[0]["seq_first"] == 0
    assert rep.retention[-1]["seq_end"] == rep.first_seq
    edited = _edit(lines, kind, i, j, pos, byte)
    if edited == lines:
        return  # swapping an entry with itself changes nothing
    path.write_bytes(b"".join(x + b"\n" for x in edited))
    try:
        with pytest.raises(IntegrityError) as err:
            arc.verify(key=False)
        assert err.value.where.get("what") == "retention"
    finally:
        path.write_bytes(good)


def test_a_crash_before_the_history_is_written_is_repaired_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16.1: record sealed and durable, crash before deletions.jsonl and the unlink: verify
    accepts it (case a, the line may be missing); the next writer appends the line (after
    cutting a torn one) and completes the deletion."""
    arc = Arc(tmp_path)
    w = build(arc, n=130)
    name = arc.layout.segment_names()[0]
    monkeypatch.setattr(ArchiveWriter, "_sync_deletions", lambda self: None)
    monkeypatch.setattr(ArchiveWriter, "_unlink_segment", lambda self, n: None)
    w.retire_segment(name, policy="max_segments", detail="crash")
    w.abandon()
    monkeypatch.undo()
    assert not arc.layout.deletions.exists() and (arc.layout.segments / name).exists()
    rep = arc.verify()
    assert [x["in_archive"] for x in rep.retention] == [True] and len(rep.warnings) == 1
    arc.layout.deletions.write_bytes(b'{"seq":')  # a torn append from an earlier crash
    arc.writer().close()
    assert not (arc.layout.segments / name).exists()
    (line,) = arc.layout.deletions.read_bytes().splitlines()
    assert orjson.loads(line)["attrs"]["segment"] == name
    for key in (True, False):
        rep = arc.verify(key=key)
        assert [x["segment"] for x in rep.retention] == [name] and rep.first_seq > 0
