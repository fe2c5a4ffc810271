#!/usr/bin/env python3
"""Throughput and peak memory of ``auditd-py seal`` and ``auditd-py verify``.

Generates a deterministic file of syslog-style lines (about 200 bytes each),
then, for each of ``--runs`` rounds, times as child processes:

* the *reference loop*: the least a Python program must do to chain-MAC a log:
  read line by line, ``tag = BLAKE2b_k(prev_tag ‖ line)`` from a pre-keyed
  state ``.copy()``, write the line and its hex tag, fsync at the end (as
  ``seal`` does when it closes its epoch). It is the yardstick;
* ``auditd-py seal --archive DIR FILE`` into a fresh archive;
* ``auditd-py verify DIR --key F`` and ``auditd-py verify DIR --public-key F``, one
  process (``--jobs 1``);
* ``verify --public-key`` with ``--jobs 1`` and ``--jobs 2`` of an archive of the
  same lines sealed in 8 segments (parallel verify works segment by segment);
* journald's Forward Secure Sealing on the same lines (``benchmarks/journald_fss.py``):
  ``systemd-journal-remote --seal=yes`` and ``journalctl --verify --verify-key``.

Each child is reaped with :func:`os.wait4`, which gives its peak RSS (on Linux
the largest of the child and of any descendants it waited for, not a sum) and
its CPU time. Children run in the scratch directory and are given the input as
``input.log``, so records carry the same short source name wherever $TMPDIR is.
The report gives per step the median wall time, lines/s, MB/s (of input log bytes),
the peak RSS (max over runs) and the ratio to the reference loop, then the goals
of issue 13, each a ratio to its anchor in the same run (printed as PASS/MISS,
never asserted), and one JSON summary line.

    python benchmarks/bench_seal_verify.py            # 1,000,000 lines, 3 runs
    python benchmarks/bench_seal_verify.py --quick    # 100,000 lines, 1 run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

try:
    from benchmarks import journald_fss
except ImportError:  # run as a script: its own directory is on sys.path
    import journald_fss  # type: ignore[import-not-found,no-redef]

DEFAULT_LINES = 1_000_000
DEFAULT_RUNS = 3
QUICK_LINES = 100_000
QUICK_RUNS = 1
SEED = 20261126

GOAL_RSS_MB = 100.0  # peak RSS of seal and verify < 100 MB
SEGMENTS = 8  # the parallel-verify archive: the input sealed in this many segments

CHUNK = 1 << 20
MB = 1_000_000  # throughput and sizes in decimal megabytes
REF_KEY = bytes(range(32))  # the reference loop's MAC key (any fixed key will do)

STEPS = (
    "reference",
    "seal",
    "verify_key",
    "verify_public_key",
    "verify_public_key_j1",
    "verify_public_key_j2",
    "journald_seal",
    "journald_verify",
)
LABELS = {
    "reference": "reference loop",
    "seal": "seal",
    "verify_key": "verify --key -j1",
    "verify_public_key": "verify --public-key -j1",
    "verify_public_key_j1": f"  {SEGMENTS} segments, -j1",
    "verify_public_key_j2": f"  {SEGMENTS} segments, -j2",
    "journald_seal": "journald FSS seal",
    "journald_verify": "journald FSS verify",
}
# The goals of issue 13: (label, numerator step, denominator step (the anchor), goal).
GOALS = (
    ("seal ÷ reference loop", "seal", "reference", 1.0),
    ("verify --key ÷ reference, one process", "verify_key", "reference", 1.5),
    ("verify --public-key -j2 ÷ -j1", "verify_public_key_j2", "verify_public_key_j1", 1.7),
    ("seal ÷ journald FSS seal", "seal", "journald_seal", 5.0),
    ("verify --key ÷ journald FSS verify", "verify_key", "journald_verify", 5.0),
)


# ---------------------------------------------------------------- input generation

_HOSTS = [f"{kind}-{i:02d}" for kind in ("web", "db", "app", "edge", "batch") for i in range(1, 9)]
_USERS = ["root", "alice", "bob", "deploy", "backup", "jenkins", "postgres", "www-data", "josé"]
_PATHS = [
    "/",
    "/index.html",
    "/api/v1/orders",
    "/api/v1/orders/{n}",
    "/api/v2/users/{n}/sessions",
    "/static/js/app.{h8}.js",
    "/healthz",
    "/login?next=%2Fadmin",
    "/metrics",
    "/search?q=audit+log+retention&page={d}",
]
_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "curl/8.5.0",
    "Prometheus/2.53.0",
    "kube-probe/1.30",
    "python-requests/2.32.3",
]
_REFERERS = ["-", "https://shop.example.com/cart", "https://www.example.org/search?q=logs"]
_UNITS = [
    "nginx.service",
    "cron.service",
    "logrotate.service",
    "apt-daily.service",
    "docker.service",
]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _ip(r: random.Random) -> str:
    a = r.choice((10, 172, 192, 203))
    return f"{a}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def _fill(template: str, r: random.Random) -> str:
    return (
        template.replace("{n}", str(r.randrange(1, 99999)))
        .replace("{d}", str(r.randrange(1, 20)))
        .replace("{h8}", f"{r.getrandbits(32):08x}")
    )


def _message(r: random.Random) -> tuple[str, str]:
    """(app, message) for one line; the mix averages about 150 bytes of text."""
    k = r.randrange(100)
    if k < 30:
        return "nginx", (
            f"{_ip(r)} - {r.choice(('-', '-', 'alice', 'svc-batch'))} "
            f'"{r.choice(("GET", "GET", "GET", "POST", "PUT"))} {_fill(r.choice(_PATHS), r)} '
            f'HTTP/1.1" {r.choice((200, 200, 200, 204, 301, 404, 500))} {r.randrange(120, 90000)} '
            f'"{r.choice(_REFERERS)}" "{r.choice(_AGENTS)}" rt={r.random() * 2:.3f} '
            f"uct={r.random() / 50:.3f} urt={r.random() * 2:.3f} upstream=10.0.{r.randrange(8)}."
            f"{r.randrange(2, 40)}:8080"
        )
    if k < 45:
        user = r.choice(_USERS)
        if r.randrange(3):
            return "sshd", (
                f"Accepted publickey for {user} from {_ip(r)} port {r.randrange(1024, 65535)} "
                f"ssh2: ED25519 SHA256:{r.getrandbits(256):064x} session {r.getrandbits(40):010x}"
            )
        return "sshd", (
            f"Failed password for invalid user {user}{r.randrange(100)} from {_ip(r)} port "
            f"{r.randrange(1024, 65535)} ssh2 [preauth] attempt {r.randrange(1, 6)} of 6; "
            f"MaxAuthTries exceeded soon, source listed in fail2ban jail sshd"
        )
    if k < 60:
        return "kernel", (
            f"[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:{r.getrandbits(24):06x} SRC={_ip(r)} "
            f"DST={_ip(r)} LEN={r.randrange(40, 1500)} TOS=0x00 TTL={r.randrange(30, 128)} "
            f"ID={r.randrange(65536)} PROTO=TCP SPT={r.randrange(1024, 65535)} DPT="
            f"{r.choice((22, 23, 80, 443, 3389, 5432))} WINDOW={r.randrange(1024, 65535)} "
            "RES=0x00 SYN URGP=0"
        )
    if k < 72:
        unit = r.choice(_UNITS)
        return "systemd", r.choice(
            (
                f"Started {unit} - periodic maintenance job {r.getrandbits(32):08x} (pid "
                f"{r.randrange(2, 65535)}, cgroup /system.slice/{unit}, invocation "
                f"{r.getrandbits(64):016x}).",
                f"{unit}: Deactivated successfully; consumed {r.random() * 9:.3f}s CPU time, "
                f"{r.randrange(1, 900)}M memory peak, {r.randrange(0, 90)}M read from disk.",
                f"{unit}: Scheduled restart job, restart counter is at {r.randrange(1, 9)}; "
                f"main process exited, code=exited, status={r.randrange(1, 4)}/FAILURE after "
                f"{r.randrange(1, 600)}s.",
            )
        )
    if k < 82:
        return "CRON", (
            f"pam_unix(cron:session): session opened for user {r.choice(_USERS)}(uid="
            f"{r.randrange(1000)}) by (uid=0); CMD (/usr/local/bin/rotate --keep "
            f"{r.randrange(7, 90)} "
            f"--compress /var/log/app/{r.getrandbits(24):06x}.log)"
        )
    if k < 92:
        return "postgres", (
            f"LOG:  duration: {r.random() * 900:.3f} ms  statement: SELECT id, status, total FROM "
            f"orders WHERE customer_id = {r.randrange(1, 10**6)} AND created_at > now() - interval "
            f"'{r.randrange(1, 30)} days' ORDER BY created_at DESC LIMIT {r.choice((10, 50, 100))}"
        )
    if k < 99:
        return "sudo", (
            f"{r.choice(_USERS)} : TTY=pts/{r.randrange(9)} ; PWD=/home/{r.choice(_USERS)} ; "
            f"USER=root ; COMMAND=/usr/bin/systemctl restart {r.choice(_UNITS)} --no-block ; "
            f"ENV=LANG=C.UTF-8 SUDO_REQUEST_ID={r.getrandbits(48):012x}"
        )
    return "app", (
        f"worker {r.randrange(64)} rejected upload {r.getrandbits(64):016x}: "
        f"filename '{r.choice(('résumé.pdf', '報告書.xlsx', 'naïve café.txt', 'ok.txt'))}' "
        f"size {r.randrange(10**6, 10**9)} exceeds quota of tenant {r.randrange(1, 5000)} "
        f"(plan {r.choice(('free', 'team', 'enterprise'))}, request {r.getrandbits(64):016x})"
    )


def generate(path: Path, lines: int, seed: int = SEED) -> int:
    """Write ``lines`` deterministic syslog lines to ``path``; return the byte count.

    About one line in 5,000 carries a stray invalid UTF-8 byte, as real logs do
    (it exercises the ``raw_b64`` branch of the record encoding).
    """
    r = random.Random(seed)
    t = 1_764_133_565  # 2025-11-26T04:46:05Z
    pids: dict[str, int] = {}
    total = 0
    with open(path, "wb", buffering=CHUNK) as fh:
        for i in range(lines):
            t += r.randrange(2)
            tm = time.gmtime(t)
            app, msg = _message(r)
            host = _HOSTS[(i * 7 + r.randrange(3)) % len(_HOSTS)]
            pid = pids.setdefault(f"{host}/{app}", r.randrange(300, 65535))
            clock = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
            stamp = f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {clock}"
            data = f"{stamp} {host} {app}[{pid}]: {msg}\n".encode()
            if r.randrange(5000) == 0:
                data = data[:-1] + b" \xff\xfe\n"
            fh.write(data)
            total += len(data)
    return total


# ---------------------------------------------------------------- reference loop


def reference_loop(src: Path, dst: Path, key: bytes = REF_KEY) -> int:
    """The yardstick: a keyed BLAKE2b chain over the lines, written out. Returns lines."""
    base = hashlib.blake2b(digest_size=32, key=key)
    prev = bytes(32)
    n = 0
    with open(src, "rb", buffering=CHUNK) as fin, open(dst, "wb", buffering=CHUNK) as fout:
        write = fout.write
        for line in fin:
            body = line[:-1] if line[-1:] == b"\n" else line
            st = base.copy()
            st.update(prev)
            st.update(body)
            prev = st.digest()
            write(body + b" " + prev.hex().encode() + b"\n")
            n += 1
        fout.flush()
        os.fsync(fout.fileno())
    return n


# ---------------------------------------------------------------- child processes


@dataclass(frozen=True, slots=True)
class ChildResult:
    seconds: float
    cpu_seconds: float  # user + system time of the child alone
    maxrss_mb: float
    stdout: str
    stderr: str


class BenchError(RuntimeError):
    pass


def run_child(argv: Sequence[str], workdir: Path) -> ChildResult:
    """Run one child in ``workdir``; time it and read its peak RSS from ``wait4``."""
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited with {proc.returncode}\n{stdout}{stderr}".rstrip()
        )
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    cpu = usage.ru_utime + usage.ru_stime
    return ChildResult(seconds, cpu, rss * (1 << 20) / MB, stdout, stderr)


def cli_command(explicit: str | None) -> list[str]:
    """How to start auditd-py: --cli, else the script next to this Python, else PATH."""
    if explicit:
        return shlex.split(explicit)
    here = Path(sys.executable).parent / "auditd-py"
    if here.exists():
        return [str(here)]
    found = shutil.which("auditd-py")
    if found:
        return [found]
    return [sys.executable, "-m", "auditd_py.cli"]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the benchmark


@dataclass(slots=True)
class Samples:
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, r: ChildResult) -> None:
        self.seconds.append(r.seconds)
        self.cpu_seconds.append(r.cpu_seconds)
        self.rss_mb.append(r.maxrss_mb)


def split(src: Path, lines: int, n: int) -> list[Path]:
    """``src`` (of ``lines`` lines) cut into ``n`` files of whole lines, streamed.

    Streamed so that this process stays small: a child's peak RSS (``wait4``)
    counts what it had between fork and exec.
    """
    k = -(-lines // n)
    out = [src.with_name(f"part-{i}.log") for i in range(n)]
    with open(src, "rb") as fin:
        for p in out:
            with open(p, "wb") as fout:
                fout.writelines(islice(fin, k))
    return out


def one_run(
    cli: list[str],
    base: Path,
    src: Path,
    parts: list[Path],
    journal: Path,
    fss_key: str,
    samples: dict[str, Samples],
    args: argparse.Namespace,
) -> int:
    """One round of every step, each a child process; returns the archive's segment bytes."""
    me = str(Path(__file__).resolve())
    ref = run_child([sys.executable, me, "--reference-worker", str(src), "ref.out"], base)
    samples["reference"].add(ref)
    (base / "ref.out").unlink()
    arch, vk, pk = base / "archive", base / "verify.key", base / "pub.key"
    multi = base / "multi"
    for a in (arch, multi):
        shutil.rmtree(a, ignore_errors=True)
        vk.unlink(missing_ok=True)
        pk.unlink(missing_ok=True)
        keygen = ["keygen", "--archive", str(a), "--verify-key", str(vk)]
        run_child([*cli, *keygen, "--public-key", str(pk)], base)
        if a == arch:
            samples["seal"].add(run_child([*cli, "seal", "--archive", str(a), src.name], base))
        else:
            for p in parts:  # not timed: the archive for the parallel rows
                run_child([*cli, "seal", "--archive", str(a), p.name], base)
        for step, argv in (
            ("verify_key", ["--key", str(vk), "--jobs", "1"]),
            ("verify_public_key", ["--public-key", str(pk), "--jobs", "1"]),
        ):
            if a == arch:
                samples[step].add(run_child([*cli, "verify", str(a), *argv], base))
        if a == multi:
            for j in (1, 2):
                argv = ["verify", str(a), "--public-key", str(pk), "--jobs", str(j)]
                samples[f"verify_public_key_j{j}"].add(run_child([*cli, *argv], base))
    size = dir_bytes(arch / "segments")
    out = base / "journal"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    samples["journald_seal"].add(run_child(journald_fss.seal_argv(journal, out), base))
    samples["journald_verify"].add(run_child(journald_fss.verify_argv(out, fss_key), base))
    if not args.keep:
        shutil.rmtree(out)
        shutil.rmtree(multi)
    return size


def bench(args: argparse.Namespace) -> dict[str, Any]:
    cli = cli_command(args.cli)
    base = Path(tempfile.mkdtemp(prefix="auditd-bench-", dir=args.dir))
    samples = {s: Samples() for s in STEPS}
    try:
        src = base / "input.log"
        t0 = time.perf_counter()
        in_bytes = generate(src, args.lines, args.seed)
        gen_s = time.perf_counter() - t0
        print(
            f"generated {args.lines:,} lines, {in_bytes / MB:.1f} MB "
            f"(avg {in_bytes / max(args.lines, 1):.0f} B/line) in {gen_s:.1f} s: {src}",
            flush=True,
        )
        startup = run_child([*cli, "--version"], base)
        parts = split(src, args.lines, SEGMENTS)
        journal = base / "input.export"
        journald_fss.export(src, journal)
        fss = journald_fss.fss_key()
        archive_size = 0
        try:
            for run in range(1, args.runs + 1):
                archive_size = one_run(cli, base, src, parts, journal, fss.key, samples, args)
                line = "  ".join(
                    f"{LABELS[s].strip()} {samples[s].seconds[-1]:.2f}s" for s in STEPS
                )
                print(f"run {run}/{args.runs}: {line}", flush=True)
        finally:
            journald_fss.restore(fss)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    summary = summarize(args, samples, in_bytes, archive_size, startup)
    summary["cli"] = cli
    return summary


def summarize(
    args: argparse.Namespace,
    samples: dict[str, Samples],
    in_bytes: int,
    archive_size: int,
    startup: ChildResult,
) -> dict[str, Any]:
    steps: dict[str, dict[str, Any]] = {}
    ref_lps = args.lines / statistics.median(samples["reference"].seconds)
    ref_cpu = statistics.median(samples["reference"].cpu_seconds)
    for s in STEPS:
        med = statistics.median(samples[s].seconds)
        cpu = statistics.median(samples[s].cpu_seconds)
        lps = args.lines / med
        steps[s] = {
            "median_s": round(med, 4),
            "seconds": [round(x, 4) for x in samples[s].seconds],
            "median_cpu_s": round(cpu, 4),
            "cpu_ratio": round(ref_cpu / cpu, 3),
            "lines_per_s": round(lps),
            "mb_per_s": round(in_bytes / med / MB, 2),
            "peak_rss_mb": round(max(samples[s].rss_mb), 1),
            "ratio": round(lps / ref_lps, 3),
        }
    rss = max(steps[s]["peak_rss_mb"] for s in STEPS if s.startswith(("seal", "verify")))
    goals = {}
    for label, num, den, goal in GOALS:
        wall = steps[num]["lines_per_s"] / steps[den]["lines_per_s"]
        cpu = steps[den]["median_cpu_s"] / steps[num]["median_cpu_s"]
        goals[label] = {"ratio": round(wall, 3), "cpu_ratio": round(cpu, 3), "goal": goal}
    goals["peak RSS of seal and verify, MB"] = {"value": rss, "goal": GOAL_RSS_MB}
    ref = samples["reference"]
    # Wall time far above CPU time, or runs far apart: other load or a slow disk
    # (fsync) dominates, and the wall-time ratios say more about the machine.
    noisy = statistics.median(ref.seconds) > 1.25 * statistics.median(ref.cpu_seconds) or any(
        max(samples[s].seconds) > 1.25 * min(samples[s].seconds) for s in STEPS
    )
    return {
        "benchmark": "auditd-py seal/verify",
        "lines": args.lines,
        "runs": args.runs,
        "input_bytes": in_bytes,
        "archive_segment_bytes": archive_size,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cli_version": startup.stdout.strip(),
        "cli_startup_s": round(startup.seconds, 4),
        "cli_startup_rss_mb": round(startup.maxrss_mb, 1),
        "steps": steps,
        "max_peak_rss_mb": rss,
        "goals": goals,
        "noisy": noisy,
    }


def report(summary: dict[str, Any]) -> None:
    steps = summary["steps"]
    print()
    print(
        f"auditd-py benchmark: {summary['lines']:,} lines, {summary['input_bytes'] / MB:.1f} MB "
        f"in, {summary['archive_segment_bytes'] / MB:.1f} MB of segments, "
        f"median of {summary['runs']} run(s), Python {summary['python']}, {summary['cpus']} CPUs"
    )
    print(
        f"{'step':<22}{'median s':>10}{'lines/s':>12}{'MB/s':>9}{'peak RSS MB':>13}"
        f"{'vs ref':>9}{'cpu s':>9}{'cpu vs ref':>12}"
    )
    for s in STEPS:
        d = steps[s]
        print(
            f"{LABELS[s]:<22}{d['median_s']:>10.2f}{d['lines_per_s']:>12,}{d['mb_per_s']:>9.1f}"
            f"{d['peak_rss_mb']:>13.1f}{d['ratio']:>9.2f}{d['median_cpu_s']:>9.2f}"
            f"{d['cpu_ratio']:>12.2f}"
        )
    print(
        "MB/s counts input log bytes; peak RSS is the max over runs. The goals use wall time;\n"
        "cpu s (user+sys of the child) and its ratio are steadier on a busy machine."
    )
    print(
        f"auditd-py --version alone takes {summary['cli_startup_s']:.2f} s and "
        f"{summary['cli_startup_rss_mb']:.0f} MB."
    )
    print()
    print("issue 13 goals (ratios of medians measured in this run; PASS/MISS, never asserted):")
    for label, _, _, goal in GOALS:
        g = summary["goals"][label]
        wall = "PASS" if g["ratio"] >= goal else "MISS"
        print(
            f"  {label:<40} {g['ratio']:>6.2f}  goal ≥ {goal:<4}  {wall}"
            f"   (by cpu time {g['cpu_ratio']:.2f})"
        )
    rss = summary["max_peak_rss_mb"]
    verdict = "PASS" if rss < GOAL_RSS_MB else "MISS"
    print(
        f"  {'peak RSS of seal and verify':<40} {rss:>4.0f}MB"
        f"  goal < {GOAL_RSS_MB:.0f} MB  {verdict}"
    )
    if summary["noisy"]:
        print(
            "note: wall times are noisy (the reference's wall time is well above its cpu time,\n"
            "      or runs differ by over 25%): the machine is busy or its disk is slow; the\n"
            "      cpu-time ratios are the better guide, or rerun with more --runs."
        )
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--lines", type=int, default=None, help=f"input lines (default {DEFAULT_LINES:,})"
    )
    p.add_argument(
        "--runs", type=int, default=None, help=f"rounds, medians reported (default {DEFAULT_RUNS})"
    )
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_LINES:,} lines, 1 run")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON summary to FILE")
    p.add_argument(
        "--dir", metavar="DIR", help="where to put the temporary files (default $TMPDIR)"
    )
    p.add_argument("--keep", action="store_true", help="keep the input and the last archive")
    p.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    p.add_argument("--cli", metavar="CMD", help="command that runs auditd-py (default: the venv's)")
    p.add_argument("--reference-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.lines = a.lines if a.lines is not None else QUICK_LINES if a.quick else DEFAULT_LINES
    a.runs = a.runs if a.runs is not None else QUICK_RUNS if a.quick else DEFAULT_RUNS
    if a.lines < 1 or a.runs < 1:
        p.error("--lines and --runs must be positive")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reference_worker:
        reference_loop(Path(args.reference_worker[0]), Path(args.reference_worker[1]))
        return 0
    try:
        summary = bench(args)
    except BenchError as exc:
        print(f"bench_seal_verify: {exc}", file=sys.stderr)
        return 2
    report(summary)
    line = json.dumps(summary, sort_keys=True)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
