"""``make demo``: seal a generated log, verify it, tamper with a copy, catch it.

Runs the real command-line tool in a scratch directory (``demo-out/`` by
default, replaced on each run) and narrates each step.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

HOSTS = ["qa-web-1", "qa-web-2", "qa-db-1"]
APPS = ["nginx", "app", "postgres", "sshd", "cron"]
WORDS = [
    "request",
    "served",
    "user",
    "login",
    "failed",
    "ok",
    "timeout",
    "retry",
    "session",
    "cache",
    "miss",
    "hit",
]


def _log(n: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)  # noqa: S311 - demo data, not security
    out = []
    for i in range(n):
        words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 12)))
        out.append(
            f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}Z {rnd.choice(HOSTS)} "
            f"{rnd.choice(APPS)}[{rnd.randint(100, 9999)}]: #{i} {words}"
        )
    return ("\n".join(out) + "\n").encode()


def _run(args: list[str], *, stdin: bytes | None = None) -> int:
    print(f"\n$ auditd-py {' '.join(args)}", flush=True)
    p = subprocess.run(  # noqa: S603 - our own CLI with arguments we built
        [sys.executable, "-m", "auditd_py.cli", *args],
        input=stdin,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if p.returncode:
        print(f"(exit {p.returncode})")
    return p.returncode


def main(out: str = "demo-out") -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    root = Path(out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    arc, vk, pk = root / "archive", root / "keys/verify.key", root / "keys/public.key"
    log = root / "app.log"
    log.write_bytes(_log(5000))
    print("== 1. create an archive and its keys")
    steps = [
        _run(["keygen", "--archive", str(arc), "--verify-key", str(vk), "--public-key", str(pk)]),
        _run(["seal", "--archive", str(arc), "--epoch-records", "2000", str(log)]),
    ]
    print("\n== 2. a test run's output, piped in as a CI job would")
    steps.append(
        _run(
            ["seal", "--archive", str(arc), "--source", "pytest"],
            stdin=b"collected 3 items\ntest_a PASSED\ntest_b PASSED\ntest_c FAILED\n",
        )
    )
    print("\n== 3. verify: with the secret key, then as an auditor with the public key")
    steps.append(_run(["verify", str(arc), "--key", str(vk)]))
    steps.append(_run(["verify", str(arc), "--public-key", str(pk)]))
    steps.append(_run(["show", str(arc), "--source", "pytest"]))
    if any(steps):
        print("demo: a step failed unexpectedly", file=sys.stderr)
        return 1

    print("\n== 4. tamper with a copy: turn the FAILED test into PASSED")
    bad = root / "tampered"
    shutil.copytree(arc, bad)
    seg = sorted((bad / "segments").iterdir())[-1]
    seg.write_bytes(seg.read_bytes().replace(b"test_c FAILED", b"test_c PASSED"))
    print(f"(edited {seg.relative_to(root)})")
    k = _run(["verify", str(bad), "--key", str(vk)])
    p = _run(["verify", str(bad), "--public-key", str(pk)])
    if k != 1 or p != 1:
        print("demo: the tampering was NOT detected", file=sys.stderr)
        return 1
    print("\n== 5. the tamper was caught by both verifiers (exit 1); the original still verifies")
    print(f"   files are in {root}/ — try: jq -c . {arc}/segments/*.jsonl | less")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
