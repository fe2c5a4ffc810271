"""The self-check's worker process: verify the closed segments, print one JSON document.

Run by :class:`~auditd_py.daemon.selfcheck.SelfCheck` as ``python -m
auditd_py.daemon.selfcheck_worker ARCHIVE --before SEGMENT ...``: at nice 19,
its address space capped, its CPU share bounded by sleeping in proportion to
the CPU it used (at every MiB and every segment). Public-key mode, with the
public key of the archive's own identity: it finds any change to a closed
segment's bytes; replacing the identity itself is for an offline ``verify``
with the auditor's key. Prints ``verify --json``'s document
(:mod:`auditd_py.report.jsonout`), also for an I/O error (then ``ok`` is false
and ``failures`` is empty: the check was inconclusive).

Under the shipped unit (``SystemCallFilter=~@resources``, EPERM) ``nice`` and
``setrlimit`` are refused: the worker then runs at the daemon's priority without
the cap, its CPU share still bounded by :class:`Throttle` and its memory by the
streaming verifier.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import IO

import orjson

from auditd_py.chain.identity import Identity
from auditd_py.errors import AuditdError, FormatError, IntegrityError
from auditd_py.report import jsonout, outcome
from auditd_py.store.layout import Layout
from auditd_py.store.reader import LocalArchive
from auditd_py.store.verification import VerifyPolicy


class ClosedSegments:
    """The archive's segments before ``before`` (the open one), as an incomplete source:
    checkpoints over the open segment's records are pending, not missing records."""

    complete = False

    def __init__(self, local: LocalArchive, before: str | None) -> None:
        self.local = local
        self.before = before

    def read_identity(self) -> bytes:
        return self.local.read_identity()

    def read_checkpoints(self) -> Sequence[tuple[str, bytes]]:
        return self.local.read_checkpoints()

    def read_deletions(self) -> bytes:
        return self.local.read_deletions()

    def list_segments(self) -> Sequence[tuple[str, str]]:
        segs = self.local.list_segments()
        return [(n, r) for n, r in segs if self.before is None or n < self.before]

    def open_lines(self, ref: str) -> AbstractContextManager[IO[bytes]]:
        return self.local.open_lines(ref)


class Throttle:
    """A progress callback that sleeps so that the process uses at most ``share`` of a CPU."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._cpu = time.process_time()

    def __call__(self, _: int) -> None:
        used = time.process_time() - self._cpu
        if used >= 0.02 and self.share < 1:
            time.sleep(used * (1 - self.share) / self.share)
            self._cpu = time.process_time()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="auditd-py self-check worker")
    p.add_argument("archive")
    p.add_argument("--before", help="the open segment: verify the ones before it")
    p.add_argument("--cpu-share", type=float, default=0.25)
    p.add_argument("--max-memory", type=int, default=1 << 30)
    a = p.parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(19)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (a.max_memory, a.max_memory))
    layout = Layout.at(a.archive)
    try:
        try:
            identity = Identity.from_bytes(layout.read_identity(), file="archive.json")
        except (IntegrityError, FormatError) as exc:  # the identity itself was changed
            bad = outcome.Finding.from_error(exc)
            empty = VerifyPolicy(b"")
            doc = jsonout.document(outcome.from_failures(a.archive, empty, [bad]))
            sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
            return 0
        policy = VerifyPolicy(identity.public_key)
        source = ClosedSegments(LocalArchive(layout), a.before)
        doc = jsonout.document(outcome.run(a.archive, source, policy, Throttle(a.cpu_share)))
    except AuditdError as exc:
        doc = jsonout.error_document("archive_dir", a.archive, exc.diagnostics())
    except MemoryError:
        doc = jsonout.error_document(
            "archive_dir", a.archive, {"error": "MemoryError", "message": "over max_memory"}
        )
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
