"""Forwarding to S3 with Object Lock, against a real server (SeaweedFS ``weed mini``).

The forwarder is driven directly with ``step()`` against archives built with
the writer; verification reads the bucket in place. Object Lock is exercised
for real: the server refuses a delete or a retention change of an uploaded
object, and an overwrite only stacks a version on top that readers never see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from botocore.exceptions import ClientError

from auditd_py import events
from auditd_py.chain.encoding import Fields
from auditd_py.chain.format import NS
from auditd_py.clock import Clock, SystemClock
from auditd_py.config import S3Forward
from auditd_py.errors import ForwardError, IntegrityError
from auditd_py.forward.base import ArchiveInfo, cursor_path, load_cursor
from auditd_py.forward.s3 import S3Forwarder
from auditd_py.store.compress import compress_segment
from auditd_py.store.fleet import verify_bucket
from auditd_py.store.reader import iter_records
from auditd_py.store.retention import Retainer, RetentionPolicy
from auditd_py.store.s3 import S3Location
from auditd_py.store.segment import read_header
from auditd_py.store.verification import MaxAge
from auditd_py.store.writer import ArchiveWriter, EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, wait_for
from tests.support.weed import ACCESS_KEY, SECRET_KEY, Weed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

RETAIN = 86400 * NS
"""Objects stay locked for a day (the server's data dir is a temp dir)."""


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    w = Weed(tmp_path_factory.mktemp("weed"))
    w.start()
    try:
        yield w
    finally:
        w.stop()


def new_bucket(weed: Weed, *, lock: bool = True) -> str:
    return weed.bucket(f"t-{uuid.uuid4().hex[:16]}", lock=lock)


class Meta:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, name: str, message: str, **fields: Any) -> None:
        assert name in events.CATALOGUE, name
        self.events.append((name, fields))


def live(arc: Arc) -> Arc:
    """The archive's manual clock moved to now: retain-until dates must lie ahead."""
    arc.clock.t = time.time_ns()
    return arc


def build(arc: Arc, n: int = 400, every: int = 100, max_records: int = 50) -> ArchiveWriter:
    """An open writer after ``n`` records, rotating every ``every`` (n/every closed segments)."""
    w = arc.writer(EpochPolicy(max_records=max_records))
    append(arc, w, 0, n, every)
    return w


def append(arc: Arc, w: ArchiveWriter, start: int, end: int, every: int = 100) -> None:
    for i in range(start, end):
        arc.clock.advance(0.01)
        w.append(Fields(arc.clock.now_ns(), "test", b"line %d" % i))
        if i % every == every - 1:
            w.rotate_segment("test")


def forwarder(
    arc: Arc,
    weed: Weed,
    bucket: str,
    *,
    clock: Clock | None = None,
    host: str = "test",
    env: str = "qa",
    grace: int = 0,
    meta: Meta | None = None,
) -> S3Forwarder:
    settings = S3Forward(
        name="vault",
        type="s3",
        bucket=bucket,
        endpoint=weed.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        retain_for="1d",  # type: ignore[arg-type]  # parsed like the YAML value
    )
    info = ArchiveInfo(arc.vk.archive, host, env, arc.layout.read_identity())
    return S3Forwarder(
        settings,
        arc.layout,
        info,
        arc.root / "fwd-state",
        clock or SystemClock(),
        meta or Meta(),
        compress_grace_ns=grace,
    )


def drain(f: S3Forwarder) -> int:
    total = 0
    for _ in range(1000):
        n = f.step()
        if n == 0:
            return total
        total += n
    raise AssertionError("the forwarder never ran out of work")


def keys(s3: S3Client, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def versions(s3: S3Client, bucket: str, key: str) -> list[str]:
    """Version ids of ``key``, newest first."""
    out = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in out if v["Key"] == key]


def get(s3: S3Client, bucket: str, key: str, version: str | None = None) -> bytes:
    kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version is not None:
        kw["VersionId"] = version
    return s3.get_object(**kw)["Body"].read()


def cli(weed: Weed, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *map(str, args), "--s3-endpoint", weed.endpoint],
        capture_output=True,
        check=False,
        env={**os.environ, **weed.env()},
    )


def where(arc: Arc, env: str = "qa", host: str = "test") -> str:
    return f"auditd-py/{env}/{host}/{arc.vk.archive}/"


def bverify(weed: Weed, bucket: str, prefix: str, arc: Arc, *, key: bool) -> Any:
    return verify_bucket(
        weed.client(),
        S3Location(bucket, prefix.rstrip("/")),
        public_key=arc.pk.public_key,
        mac_key=arc.vk.mac_key if key else None,
    )


def copy_bucket(s3: S3Client, src: str, dst: str, prefix: str) -> None:
    """The oldest version of every object under ``prefix`` into ``dst`` (no lock)."""
    for key in keys(s3, src, prefix):
        s3.put_object(Bucket=dst, Key=key, Body=get(s3, src, key, versions(s3, src, key)[-1]))


# ---------------------------------------------------------------- uploads


def test_forwarder_uploads_identity_checkpoints_and_closed_segments(
    weed: Weed, tmp_path: Path
) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc)  # segments 0..3 closed, 4 open
    compress_segment(arc.layout, "seg-0000000001.jsonl", "zstd")
    compress_segment(arc.layout, "seg-0000000002.jsonl", "gzip")
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket)
    cps = [n.split("/")[1] for n, _ in arc.layout.checkpoint_files()]
    assert f.floor() == 0
    lag = f.lag()
    assert lag["segments"] == 4 and lag["checkpoints"] == len(cps)
    open_name, open_path = arc.layout.segment_files()[-1]
    assert lag["records"] == read_header(open_path, open_name).seq

    t0 = datetime.now(UTC)
    assert f.step() == 1 + len(cps) + 1  # the identity, every checkpoint, the oldest segment
    assert drain(f) == 3  # then one closed segment per step
    t1 = datetime.now(UTC)
    s3 = weed.client()
    p = where(arc)
    want = (
        [p + "archive.json"]
        + [p + f"checkpoints/{n}" for n in cps]
        + [
            p + "segments/seg-0000000000.jsonl",
            p + "segments/seg-0000000001.jsonl.zst",
            p + "segments/seg-0000000002.jsonl.gz",
            p + "segments/seg-0000000003.jsonl",
        ]
    )
    assert keys(s3, bucket) == sorted(want)  # not the open segment
    for key in want:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        assert t0 + timedelta(days=1, seconds=-5) <= until <= t1 + timedelta(days=1, seconds=5)
        assert head.get("ChecksumSHA256")
    for rel, path in (
        ("archive.json", arc.layout.identity),
        ("segments/seg-0000000001.jsonl.zst", arc.layout.segment_path("seg-0000000001.jsonl")),
    ):
        assert get(s3, bucket, p + rel) == path.read_bytes()
    c = load_cursor(cursor_path(arc.root / "fwd-state", "vault"), arc.vk.archive)
    assert c.identity_sent and c.checkpoint == len(cps)
    assert c.segments_done == "seg-0000000003.jsonl"
    assert f.lag() == {"segments": 0, "checkpoints": 0, "records": 0}
    assert f.floor() is None
    assert f.uploads == len(want) and f.duplicates == 0

    # a checkpoint goes up as soon as it is written; a segment once it is closed
    append(arc, w, 400, 430, every=1000)
    w.end_epoch("interval")
    assert f.step() == 1
    assert keys(s3, bucket, p + "segments/") == sorted(k for k in want if "/segments/" in k)
    w.rotate_segment("test")
    assert f.step() == 2  # the rotation's checkpoint and the segment it closed
    assert p + "segments/seg-0000000004.jsonl" in keys(s3, bucket)
    w.close()
    assert f.step() == 1  # the close's checkpoint; its segment is the host's last
    for mode in (True, False):
        res = bverify(weed, bucket, p, arc, key=mode)
        assert res.report.segments == 5
        assert res.pending_checkpoints == 1 and res.pending_records == 2
    f.close()


def test_waits_for_the_compressed_file_within_the_grace(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc, n=100)  # seg-0 closed a moment ago, seg-1 open
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket, clock=arc.clock, grace=30 * NS)
    p = where(arc)
    f.step()
    assert keys(weed.client(), bucket, p + "segments/") == []  # the compressor's turn first
    assert f.floor() == 0 and f.lag()["segments"] == 1
    arc.clock.advance(10)
    assert f.step() == 0
    compress_segment(arc.layout, "seg-0000000000.jsonl", "zstd")
    assert f.step() == 1  # compressed: no reason to wait
    append(arc, w, 100, 200)  # seg-1 closed; nothing compresses it
    assert f.step() > 0  # its checkpoints, not the segment
    assert len(keys(weed.client(), bucket, p + "segments/")) == 1
    arc.clock.advance(31)
    assert f.step() == 1  # the grace is over: the plain file goes
    assert keys(weed.client(), bucket, p + "segments/") == [
        p + "segments/seg-0000000000.jsonl.zst",
        p + "segments/seg-0000000001.jsonl",
    ]
    w.close()
    f.close()


# ---------------------------------------------------------------- Object Lock


def test_delete_and_overwrite_are_refused_and_verify_reads_the_original(
    weed: Weed, tmp_path: Path
) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc)
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket)
    drain(f)
    s3 = weed.client()
    p = where(arc)
    key = p + "segments/seg-0000000001.jsonl"
    original = get(s3, bucket, key)
    [vid] = versions(s3, bucket, key)

    def refused(status: int, call: Any, **kw: Any) -> None:
        with pytest.raises(ClientError) as ei:
            call(Bucket=bucket, Key=key, **kw)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, ei.value

    refused(403, s3.delete_object, VersionId=vid)  # COMPLIANCE: not before the date
    refused(403, s3.delete_object, VersionId=vid, BypassGovernanceRetention=True)
    soon = datetime.now(UTC) + timedelta(seconds=5)
    refused(
        403,
        s3.put_object_retention,
        VersionId=vid,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon},
    )
    refused(
        403,
        s3.put_object_retention,
        VersionId=vid,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon},
    )
    forged = original.replace(b"line 150", b"line 15X")
    refused(412, s3.put_object, Body=forged, IfNoneMatch="*")  # what the forwarder sends

    # A blind PUT is not an overwrite in a versioned bucket: it stacks a newer
    # version; a DELETE without a version id stacks a delete marker. The
    # original version stays, locked, with its bytes, and readers take it.
    s3.put_object(Bucket=bucket, Key=key, Body=forged)
    s3.delete_object(Bucket=bucket, Key=p + "segments/seg-0000000002.jsonl")
    s3.put_object(Bucket=bucket, Key=p + "checkpoints/cp-0000000000.json", Body=b"{}\n")
    assert get(s3, bucket, key) == forged
    assert get(s3, bucket, key, vid) == original
    assert versions(s3, bucket, key)[-1] == vid
    assert s3.head_object(Bucket=bucket, Key=key, VersionId=vid)["ObjectLockMode"] == "COMPLIANCE"
    for k in (True, False):
        res = bverify(weed, bucket, p, arc, key=k)
        assert res.report.segments == 4 and res.report.records == 407
    # the forwarder's own re-upload of that key is refused too, and found to be the same
    f.cursor.segments_done = "seg-0000000000.jsonl"
    assert f.step() == 1 and f.duplicates == 1
    assert versions(s3, bucket, key)[-1] == vid and len(versions(s3, bucket, key)) == 2
    w.close()
    f.close()


def test_a_conflicting_object_is_reported_not_overwritten(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc, n=100)
    bucket = new_bucket(weed)
    s3 = weed.client()
    p = where(arc)
    s3.put_object(Bucket=bucket, Key=p + "checkpoints/cp-0000000000.json", Body=b"not ours\n")
    meta = Meta()
    f = forwarder(arc, weed, bucket, meta=meta)
    for _ in range(2):
        with pytest.raises(ForwardError, match="already holds different bytes"):
            f.step()
    assert [n for n, _ in meta.events] == ["forward.conflict"]  # once, not per retry
    assert f.cursor.checkpoint == 0 and f.cursor.identity_sent
    w.close()
    f.close()


def test_a_bucket_without_object_lock_is_refused(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    arc.seal([b"x"])
    f = forwarder(arc, weed, new_bucket(weed, lock=False))
    with pytest.raises(ForwardError, match="no Object Lock"):
        f.step()
    assert not f.cursor.identity_sent
    f.close()


# ---------------------------------------------------------------- verify from the bucket


def test_verify_s3_with_both_keys_and_tampered_copies(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc)
    compress_segment(arc.layout, "seg-0000000002.jsonl", "zstd")
    w.close()
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket)
    drain(f)
    f.close()
    p = where(arc)
    url = f"s3://{bucket}/{p.rstrip('/')}"
    for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
        r = cli(weed, "verify", url, flag, key, "--json")
        assert r.returncode == 0, r.stderr
        doc = orjson.loads(r.stdout)
        assert doc["ok"] and doc["records"] == 407 and doc["segments"] == 4
        assert doc["pending_checkpoints"] == 1 and doc["pending_records"] == 2
        r = cli(weed, "verify", url, flag, key)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert f"{url}: intact" in out and "pending: 2 checkpointed record(s)" in out
        r = cli(weed, "verify", url, flag, key, "--max-age", "3650d")
        assert r.returncode == 0, r.stderr
    # S1 on the bucket's newest checkpoint (the rule fleet verify applies too), as the
    # auditor's clock says an hour and a second after it
    loc = S3Location(bucket, p.rstrip("/"))
    last = verify_bucket(weed.client(), loc, public_key=arc.pk.public_key).last_checkpoint
    assert last is not None
    late = MaxAge(3600 * 10**9, last + 3601 * 10**9)
    with pytest.raises(IntegrityError) as stale:
        verify_bucket(weed.client(), loc, public_key=arc.pk.public_key, max_age=late)
    assert stale.value.where["what"] == "stale"

    # copies in a bucket without lock, tampered with
    s3 = weed.client()
    seg = p + "segments/seg-0000000001.jsonl"
    zst = p + "segments/seg-0000000002.jsonl.zst"

    def flip(data: bytes) -> bytes:  # one bit in the middle of the zstd frame
        mid = len(data) // 2
        return data[:mid] + bytes([data[mid] ^ 1]) + data[mid + 1 :]

    cases: dict[str, Callable[[str], object]] = {
        "missing_segment": lambda b: s3.delete_object(Bucket=b, Key=seg),
        "broken_link": lambda b: s3.put_object(
            Bucket=b, Key=seg, Body=get(s3, b, seg).replace(b"line 150", b"line 15X")
        ),
        "format": lambda b: s3.put_object(Bucket=b, Key=zst, Body=flip(get(s3, b, zst))),
    }
    for what, tamper in cases.items():
        copy = new_bucket(weed, lock=False)
        copy_bucket(s3, bucket, copy, p)
        tamper(copy)
        for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
            r = cli(weed, "verify", f"s3://{copy}/{p}", flag, key, "--json")
            assert r.returncode == 1, (what, r.stdout, r.stderr)
            assert orjson.loads(r.stdout)["what"] == what, r.stdout
            assert b"integrity failure" in r.stderr
    # the wrong key, or an archive id that is not the one under the key
    other = Arc(tmp_path / "other", random=None)
    r = cli(weed, "verify", url, "--public-key", other.pk_path)
    assert r.returncode == 1 and b"different public key" in r.stderr
    r = cli(weed, "verify", f"s3://{bucket}/auditd-py/qa/test/nothing", "--public-key", arc.pk_path)
    assert r.returncode == 2 and b"no archive at" in r.stderr
    # nothing reachable: an I/O error (exit 2), not an integrity failure
    r = subprocess.run(
        [
            *CLI,
            "verify",
            url,
            "--public-key",
            str(arc.pk_path),
            "--s3-endpoint",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        check=False,
        env={**os.environ, **weed.env()},
    )
    assert r.returncode == 2 and b"cannot read" in r.stderr


def test_anchor_from_catches_a_truncated_host(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc)
    w.close()
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket)
    drain(f)
    f.close()
    url = f"s3://{bucket}/{where(arc)}"
    ncps = len(arc.layout.checkpoint_files())
    for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
        r = cli(weed, "verify", arc.layout.root, flag, key, "--anchor-from", url)
        assert r.returncode == 0, r.stderr
        assert f"anchor: checkpoint {ncps - 1} matches" in r.stdout.decode()

    # the host cuts its newest segment and the checkpoints over it
    name, path = arc.layout.segment_files()[-1]
    cut = read_header(path, name).seq
    path.unlink()
    for n, line in arc.layout.checkpoint_files():
        if orjson.loads(line)["seq_end"] > cut:
            (arc.layout.root / n).unlink()
    arc.verify()  # consistent by itself: nothing on the host shows the cut
    for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
        r = cli(weed, "verify", arc.layout.root, flag, key, "--anchor-from", url, "--json")
        assert r.returncode == 1, r.stderr
        assert orjson.loads(r.stdout)["what"] == "truncated"
    r = cli(
        weed,
        "verify",
        arc.layout.root,
        "--public-key",
        arc.pk_path,
        "--anchor-from",
        url,
        "--anchor",
        arc.pk_path,
    )
    assert r.returncode == 2 and b"not both" in r.stderr


# ---------------------------------------------------------------- outages, crashes, retention


def test_outage_keeps_the_cursor_and_catches_up_without_harmful_duplicates(
    tmp_path: Path,
) -> None:
    server = Weed(tmp_path / "weed")  # its own: this test stops it
    server.start()
    try:
        arc = live(Arc(tmp_path / "a"))
        w = build(arc, n=200)
        bucket = new_bucket(server)
        f = forwarder(arc, server, bucket)
        drain(f)
        cpath = cursor_path(arc.root / "fwd-state", "vault")
        before = cpath.read_bytes()
        append(arc, w, 200, 400)  # two more closed segments while the bucket is away
        server.stop()
        for _ in range(2):
            with pytest.raises(ForwardError) as ei:
                f.step()
            assert bucket in str(ei.value) and server.endpoint in str(ei.value)
        assert cpath.read_bytes() == before  # nothing acknowledged, nothing moved
        lag = f.lag()
        assert lag["segments"] == 2 and lag["checkpoints"] > 0 and lag["records"] == 204
        assert f.floor() == 101 + 102  # the first seq of seg-2
        server.start()  # same data directory
        assert drain(f) == lag["checkpoints"] + 2
        assert f.lag() == {"segments": 0, "checkpoints": 0, "records": 0}
        after = cpath.read_bytes()

        # A crash between a PUT and the cursor's save: the next run starts from an
        # older cursor and sends those objects again. The server refuses each
        # (If-None-Match), the forwarder finds the same bytes there and moves on.
        cpath.write_bytes(before)
        f2 = forwarder(arc, server, bucket)
        assert drain(f2) == lag["checkpoints"] + 2
        assert f2.duplicates == lag["checkpoints"] + 2
        assert cpath.read_bytes() == after
        s3 = server.client()
        for key in keys(s3, bucket):
            assert len(versions(s3, bucket, key)) == 1, key
        for k in (True, False):
            res = bverify(server, bucket, where(arc), arc, key=k)
            assert res.report.records == 407 and res.pending_checkpoints == 0
        w.close()
        f.close()
        f2.close()
    finally:
        server.stop()


def test_floor_holds_retention_until_segments_are_uploaded(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    w = build(arc)  # 4 closed segments, one open
    bucket = new_bucket(weed)
    f = forwarder(arc, weed, bucket)
    ret = Retainer(arc.layout, RetentionPolicy(max_segments=1), floor=f.floor)
    done, blocked = ret.run(w)
    assert done == [] and blocked is not None and "forwarder" in blocked.reason
    assert len(arc.layout.segment_names()) == 5
    f.step()  # identity, checkpoints, seg-0
    done, blocked = ret.run(w)
    assert [d["segment"] for d in done] == ["seg-0000000000.jsonl"]
    assert blocked is not None and blocked.name == "seg-0000000001.jsonl"
    drain(f)
    done, blocked = ret.run(w)
    assert len(done) == 3 and blocked is None
    assert arc.layout.segment_names() == ["seg-0000000004.jsonl"]
    w.rotate_segment("test")  # the retention records go up in a closed segment
    drain(f)
    w.close()
    arc.verify()  # the host: a retained archive
    for k in (True, False):  # the bucket: everything, and why the host has less
        res = bverify(weed, bucket, where(arc), arc, key=k)
        assert res.report.first_seq == 0 and res.report.segments == 5
        kept = [x for x in res.report.warnings if "deleted on the host by retention" in x]
        assert len(kept) == 4, res.report.warnings
    f.close()


# ---------------------------------------------------------------- the fleet


def test_fleet_verify_one_line_per_host(weed: Weed, tmp_path: Path) -> None:
    bucket = new_bucket(weed)
    good = live(Arc(tmp_path / "good", random=None))
    stale = Arc(tmp_path / "stale", random=None)  # its clock is a year behind
    for arc, host in ((good, "web-1"), (stale, "web-2")):
        w = build(arc, n=200)
        w.close()
        f = forwarder(arc, weed, bucket, host=host, env="staging", clock=SystemClock())
        drain(f)
        f.close()
    kdir = tmp_path / "keys"
    kdir.mkdir()
    shutil.copy(good.pk_path, kdir / f"{good.vk.archive}.key")
    shutil.copy(stale.pk_path, kdir / "web-2.pub")  # found by the archive id inside
    (kdir / "README").write_text("not a key\n")
    env = f"s3://{bucket}/auditd-py/staging"

    r = cli(weed, "fleet", "verify", env, "--public-key-dir", kdir, "--max-age", "1h")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"web-1 {good.vk.archive} OK 203 records, 2 pending upload")
    assert lines[1].startswith(f"web-2 {stale.vk.archive} STALE 203 records")
    assert "last checkpoint 2025-11-26T" in lines[1] and "> 3600s" in lines[1]
    assert b"2 archive(s), 1 ok, 1 not ok" in r.stderr

    r = cli(weed, "fleet", "verify", env, "--public-key-dir", kdir, "--max-age", "3650d", "--json")
    assert r.returncode == 0, r.stderr
    docs = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [(d["host"], d["status"]) for d in docs] == [("web-1", "ok"), ("web-2", "ok")]

    # a failed host (a tampered copy in a bucket without lock) and a host without a key
    s3 = weed.client()
    copy = new_bucket(weed, lock=False)
    copy_bucket(s3, bucket, copy, "auditd-py/staging/")
    seg = f"auditd-py/staging/web-1/{good.vk.archive}/segments/seg-0000000000.jsonl"
    s3.put_object(Bucket=copy, Key=seg, Body=get(s3, copy, seg).replace(b"line 5", b"line X"))
    (kdir / "web-2.pub").unlink()
    r = cli(
        weed,
        "fleet",
        "verify",
        f"s3://{copy}/auditd-py/staging",
        "--public-key-dir",
        kdir,
        "--max-age",
        "3650d",
    )
    assert r.returncode == 1
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2 and " FAILED " in lines[0] and "record altered" in lines[0]
    assert " NO_KEY " in lines[1]
    r = cli(weed, "fleet", "verify", f"s3://{bucket}/auditd-py/nothing", "--public-key-dir", kdir)
    assert r.returncode == 2 and b"no archive under" in r.stderr


# ---------------------------------------------------------------- the daemon


def test_daemon_forwards_to_s3(weed: Weed, tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    bucket = new_bucket(weed)
    logs = tmp_path / "logs"
    logs.mkdir()
    doc = configs.daemon(
        arc,
        environment="qa",
        epoch_interval="1s",
        segments={"max_bytes": "32KiB", "compress": "none"},
        sources=[configs.file_source(logs)],
        forward=[
            {
                "name": "vault",
                "type": "s3",
                "bucket": bucket,
                "endpoint": weed.endpoint,
                "retain_for": "1d",
                "retry_max": "1s",
            }
        ],
    )
    cfg = configs.write(tmp_path / "d.yaml", doc)
    s3 = weed.client()
    p = where(arc)
    d = Daemon(tmp_path, cfg, env=weed.env())
    try:
        d.ready()
        for k in range(0, 2000, 200):  # in chunks: a rotation per chunk or so
            with (logs / "app.log").open("ab") as fh:
                fh.write(b"".join(b"app line %d\n" % i for i in range(k, k + 200)))
            time.sleep(0.15)
        assert wait_for(lambda: len(keys(s3, bucket, p + "segments/")) >= 3, 30), (
            tmp_path / "daemon.stderr"
        ).read_text()[-3000:]
    finally:
        code = d.stop()
    assert code == 0, (tmp_path / "daemon.stderr").read_text()[-3000:]
    assert keys(s3, bucket, p + "archive.json") == [p + "archive.json"]
    for k in (True, False):
        res = bverify(weed, bucket, p, arc, key=k)
        assert res.report.records > 0
    app = [o["message"] for _, o in iter_records(arc.layout) if o["source"] == "app"]
    assert app == [f"app line {i}" for i in range(2000)]
    r = cli(
        weed,
        "verify",
        arc.layout.root,
        "--public-key",
        arc.pk_path,
        "--anchor-from",
        f"s3://{bucket}/{p}",
    )
    assert r.returncode == 0, r.stderr


def test_verify_bucket_rejects_an_archive_under_another_id(weed: Weed, tmp_path: Path) -> None:
    arc = live(Arc(tmp_path))
    arc.seal([b"a", b"b"])
    bucket = new_bucket(weed, lock=False)
    s3 = weed.client()
    s3.put_object(
        Bucket=bucket, Key="x/qa/h/other-id/archive.json", Body=arc.layout.identity.read_bytes()
    )
    with pytest.raises(IntegrityError) as ei:
        verify_bucket(s3, S3Location(bucket, "x/qa/h/other-id"), public_key=arc.pk.public_key)
    assert ei.value.where["what"] == "identity"
