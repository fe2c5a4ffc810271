"""Helpers for the attack catalogue (tests/test_attacks.py).

Archives are built and checked through the command-line tool itself, called
in-process (``auditd_py.cli.main``) for speed, or as a real subprocess for the
tests marked ``integration``. Tampering is done on the bytes on disk.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from auditd_py import cli
from tests import independent_verifier as iv

#: The two verifier modes: ``--key`` (MACs too) and ``--public-key`` (auditor).
MODES = ("key", "public-key")

#: The real command-line tool, next to the interpreter running the tests.
CLI_BIN = Path(sys.executable).with_name("auditd-py")


@dataclass(frozen=True, slots=True)
class Result:
    """Exit code and output of one command."""

    code: int
    out: bytes
    err: str

    def report(self) -> dict[str, Any]:
        """The ``--json`` report printed on stdout."""
        obj = orjson.loads(self.out)
        assert isinstance(obj, dict), self.out
        return obj

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.code}\nstdout: {self.out!r}\nstderr: {self.err}"


def run_cli(*args: str | Path) -> Result:
    """Run ``auditd-py ARGS`` in-process; never lets SystemExit escape.

    Any other exception (a traceback, for a user) propagates and fails the test.
    """
    out, err = io.BytesIO(), io.BytesIO()
    fake_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    fake_err = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    sys.stdout, sys.stderr = fake_out, fake_err
    try:
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        fake_out.flush()
        fake_err.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return Result(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))


def run_real(*args: str | Path, timeout: float = 30) -> Result:
    """Run the installed ``auditd-py`` as a subprocess."""
    proc = subprocess.run(
        [str(CLI_BIN), *(str(a) for a in args)],
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def segment_name(n: int) -> str:
    return f"seg-{n:010d}.jsonl"


def checkpoint_name(epoch: int) -> str:
    return f"cp-{epoch:010d}.json"


def seg_ref(n: int) -> str:
    """How verify names a segment file in its diagnostics."""
    return f"segments/{segment_name(n)}"


def cp_ref(epoch: int) -> str:
    """How verify names a checkpoint file in its diagnostics."""
    return f"checkpoints/{checkpoint_name(epoch)}"


@dataclass(frozen=True, slots=True)
class Archive:
    """An archive directory with its two key files, under one work directory."""

    work: Path

    @property
    def root(self) -> Path:
        return self.work / "arc"

    @property
    def verify_key(self) -> Path:
        return self.work / "keys" / "verify.key"

    @property
    def public_key(self) -> Path:
        return self.work / "keys" / "public.key"

    @property
    def state(self) -> Path:
        return self.root / ".state"

    def segment(self, n: int) -> Path:
        return self.root / "segments" / segment_name(n)

    def checkpoint(self, epoch: int) -> Path:
        return self.root / "checkpoints" / checkpoint_name(epoch)

    def segment_paths(self) -> list[Path]:
        return sorted((self.root / "segments").glob("seg-*.jsonl"))

    def checkpoint_paths(self) -> list[Path]:
        return sorted((self.root / "checkpoints").glob("cp-*.json"))

    # ------------------------------------------------------------ tampering

    def lines(self, n: int) -> list[bytes]:
        """The lines of segment ``n``, without their newlines."""
        return self.segment(n).read_bytes().split(b"\n")[:-1]

    def write_lines(self, n: int, lines: Iterable[bytes]) -> None:
        self.segment(n).write_bytes(b"".join(line + b"\n" for line in lines))

    def edit_line(self, n: int, line_no: int, edit: Callable[[bytes], bytes]) -> None:
        """Replace line ``line_no`` (1-based) of segment ``n`` by ``edit(line)``."""
        lines = self.lines(n)
        new = edit(lines[line_no - 1])
        assert new != lines[line_no - 1], "the edit changed nothing"
        lines[line_no - 1] = new
        self.write_lines(n, lines)

    def edit_checkpoint(self, epoch: int, edit: Callable[[bytes], bytes]) -> None:
        path = self.checkpoint(epoch)
        old = path.read_bytes()
        new = edit(old)
        assert new != old, "the edit changed nothing"
        path.write_bytes(new)

    # ------------------------------------------------------------ the tool

    def seal(self, *lines: bytes, epoch_records: int | None = 2, args: Sequence[str] = ()) -> None:
        """``auditd-py seal`` of ``lines`` (one input file), as source ``app``."""
        inputs = self.work / "in"
        inputs.mkdir(exist_ok=True)
        src = inputs / f"input-{len(list(inputs.iterdir())):04d}.log"
        src.write_bytes(b"".join(line + b"\n" for line in lines))
        extra = ["--epoch-records", str(epoch_records)] if epoch_records is not None else []
        r = run_cli("seal", "--archive", self.root, "--source", "app", *extra, *args, src)
        assert r.code == 0, str(r)

    def key_args(self, mode: str) -> list[str]:
        if mode == "key":
            return ["--key", str(self.verify_key)]
        assert mode == "public-key", mode
        return ["--public-key", str(self.public_key)]

    def verify(self, mode: str, *args: str | Path) -> Result:
        return run_cli("verify", self.root, *self.key_args(mode), *args)

    def verify_ok(self, mode: str, *args: str | Path) -> dict[str, Any]:
        """``verify --json``, asserting success; returns the report."""
        r = self.verify(mode, "--json", *args)
        assert r.code == 0, str(r)
        rep = r.report()
        assert rep["ok"] is True, rep
        return rep

    def head(self) -> bytes:
        r = run_cli("head", self.root)
        assert r.code == 0, str(r)
        return r.out

    def copy_to(self, work: Path) -> Archive:
        shutil.copytree(self.work, work, symlinks=True)
        return Archive(work)


def keygen(work: Path, host: str = "test-host") -> Archive:
    arc = Archive(work)
    work.mkdir(parents=True, exist_ok=True)
    r = run_cli(
        "keygen",
        "--archive",
        arc.root,
        "--verify-key",
        arc.verify_key,
        "--public-key",
        arc.public_key,
        "--host",
        host,
    )
    assert r.code == 0, str(r)
    return arc


def expect_detected(
    arc: Archive,
    what: str | dict[str, str] | None,
    *,
    args: Sequence[str | Path] = (),
    modes: Sequence[str] = MODES,
    **where: object,
) -> None:
    """Both verifiers fail with exit 1, and the report names ``what`` and ``where``.

    ``what`` is one value for both modes, or one per mode (``None``: not
    checked). Each ``where`` key (file, line, seq, epoch, field, error) must be
    in the ``--json`` report with exactly that value; ``None`` means the key must
    be absent. The plain (non-JSON) run must print exactly one line on stderr,
    naming the same file.
    """
    for mode in modes:
        want = {} if what is None else {"what": what if isinstance(what, str) else what[mode]}
        r = arc.verify(mode, "--json", *args)
        assert r.code == 1, f"{mode}: {r}"
        rep = r.report()
        assert rep["ok"] is False, rep
        got = {k: rep.get(k) for k in (*want, *where)}
        assert got == {**want, **where}, f"{mode}: {rep}"

        plain = arc.verify(mode, *args)
        assert plain.code == 1, f"{mode}: {plain}"
        # stdout: the failure and what was verified before it; stderr: one line, code first
        assert b": FAILED (" in plain.out, f"{mode}: {plain}"
        assert b"  verified before the failure: " in plain.out, f"{mode}: {plain}"
        err_lines = plain.err.splitlines()
        assert len(err_lines) == 1, f"{mode}: {plain}"
        assert err_lines[0].startswith("auditd-py: integrity failure: "), f"{mode}: {plain}"
        if "what" in want:
            code = str(want["what"])
            assert err_lines[0].startswith(f"auditd-py: integrity failure: {code}: "), f"{plain}"
            assert f"  failure {code}: ".encode() in plain.out, f"{mode}: {plain}"
        if isinstance(where.get("file"), str):
            assert str(where["file"]) in err_lines[0], f"{mode}: {plain}"
        assert "Traceback" not in plain.err
        _independent_agrees(arc, mode, want.get("what"), args)


def _independent_agrees(
    arc: Archive, mode: str, what: str | None, args: Sequence[str | Path]
) -> None:
    """The verifier written from docs/FORMAT.md alone fails too, with the same ``what``
    where both name one (its format errors carry none, or ``format``)."""
    opts = {str(a) for a in args[::2]}
    if not opts <= {"--anchor", "--require-sealed"}:
        return  # --max-age and --all are the reference's own options
    anchor = (
        Path(args[list(map(str, args)).index("--anchor") + 1]).read_bytes()
        if "--anchor" in opts
        else None
    )
    key = (arc.verify_key if mode == "key" else arc.public_key).read_bytes()
    try:
        iv.verify(arc.root, key, anchor=anchor, require_sealed="--require-sealed" in opts)
    except iv.VerificationError as exc:
        if what is not None and what != "format" and exc.what is not None:
            assert exc.what == what, f"{mode}: independent verifier: {exc}"
        return
    raise AssertionError(f"{mode}: the independent verifier finds {arc.root} intact")


def one_line_error(r: Result, code: int, *needles: str) -> None:
    """A clean failure: exit ``code``, one stderr line holding every needle."""
    assert r.code == code, str(r)
    assert "Traceback" not in r.err, str(r)
    lines = r.err.splitlines()
    assert len(lines) == 1, str(r)
    assert lines[0].startswith("auditd-py: "), str(r)
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
