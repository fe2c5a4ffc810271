#!/usr/bin/env python3
"""How fast ``auditd-py show`` answers the questions operators ask, on a big archive.

Builds an archive of ``--lines`` records (1,000,000 by default) with
``auditd-py seal`` in ten runs (ten segments), compresses all but the last
segment with zstd (as the daemon does with closed segments), then times as
child processes, median of ``--runs``:

* the *anchor*: ``auditd-py --version``, the start-up every command pays;
* ``show -n 10`` (the last ten lines), ``show -n 10 -r``, ``show --since`` of
  the last second, ``show --seq`` of the last ten records, ``show -n 10 -g``;
* once, the whole archive as ``show -o json`` (what a scan costs).

It prints each median and its ratio to the anchor (an -n 10 that reads only
the end of the archive costs about one start-up; ``--since`` of the last second
prints the records sealed in it), then one JSON line. Nothing is asserted: the
goal line says PASS or MISS.

    python benchmarks/bench_show.py             # 1,000,000 records, 5 runs
    python benchmarks/bench_show.py --quick     # 100,000 records, 3 runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from auditd_py.store.compress import compress_segment
from auditd_py.store.layout import Layout

CLI = [sys.executable, "-m", "auditd_py"]
GOAL_SECONDS = 1.0  # "-n 10 on a 1M-record archive well under a second" ...
GOAL_RATIO = 1.5  # ... which is about the start-up: at most 1.5x the anchor


def _run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def build(work: Path, lines: int) -> Path:
    archive = work / "archive"
    subprocess.run(
        [*CLI, "keygen", "--archive", str(archive), "--verify-key", str(work / "v.key"),
         "--public-key", str(work / "p.key")],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    per = max(1, lines // 10)
    for part in range(10):
        src = work / f"in-{part}.log"
        with src.open("wb") as fh:
            for i in range(part * per, (part + 1) * per):
                fh.write(
                    b"<30>1 2026-12-04T10:00:00Z web-%02d app %d - - request %d served in %d ms "
                    b"path=/api/v1/items/%d status=200 bytes=%d\n"
                    % (i % 40, i % 5000, i, i % 997, i % 100000, (i * 7) % 65536)
                )
        subprocess.run(
            [*CLI, "seal", "--archive", str(archive), "--source", "app", "--epoch-records",
             str(max(1, per // 4)), str(src)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        src.unlink()
    layout = Layout.at(archive)
    for name in layout.segment_names()[:-1]:
        compress_segment(layout, name, "zstd")
    return archive


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="100,000 records, 3 runs")
    a = ap.parse_args()
    lines, runs = (100_000, 3) if a.quick else (a.lines, a.runs)
    work = Path(tempfile.mkdtemp(prefix="bench-show-"))
    try:
        t = time.perf_counter()
        archive = build(work, lines)
        print(f"built {lines} records in {time.perf_counter() - t:.1f}s: {archive}")
        root = str(archive)
        last = int(time.time())
        cases = {
            "anchor (--version)": [*CLI, "--version"],
            "show -n 10": [*CLI, "show", root, "-n", "10"],
            "show -n 10 -r": [*CLI, "show", root, "-n", "10", "-r"],
            "show -n 10 -g 'request 99'": [*CLI, "show", root, "-n", "10", "-g", "request 99"],
            "show --since (last second)": [*CLI, "show", root, f"--since=@{last - 1}"],
            "show --seq (last 10)": [*CLI, "show", root, "--seq", f"{lines - 9}.."],
        }
        med: dict[str, float] = {}
        for label, argv in cases.items():
            med[label] = statistics.median(_run(argv) for _ in range(runs))
        med["show -o json (whole archive, once)"] = _run([*CLI, "show", root, "-o", "json"])
        anchor = med["anchor (--version)"]
        for label, secs in med.items():
            print(f"  {label:40s} {secs * 1000:9.1f} ms  {secs / anchor:6.2f}x anchor")
        n10 = med["show -n 10"]
        verdict = "PASS" if n10 < GOAL_SECONDS and n10 / anchor <= GOAL_RATIO else "MISS"
        print(
            f"goal: show -n 10 on {lines} records < {GOAL_SECONDS}s and <= {GOAL_RATIO}x the "
            f"anchor: {verdict} ({n10:.3f}s, {n10 / anchor:.2f}x)"
        )
        print(json.dumps({"lines": lines, "runs": runs, "seconds": med, "anchor": anchor}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
