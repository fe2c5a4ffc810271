"""Parallel verification (``verify --jobs N``) gives the one-process verdict and report.

Intact archives, randomly damaged ones (hypothesis), the test vectors (a
retained archive among them) and the command line's JSON report are compared
between one process and several; on an intact archive every segment but the
first must come from a worker (or the parallel path would prove nothing).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditd_py.chain.keys import PublicKey, VerifyKey
from auditd_py.chain.verify import Verifier
from auditd_py.errors import AuditdError
from auditd_py.store.layout import Layout
from auditd_py.store.parallel import read_segments
from auditd_py.store.reader import LocalArchive
from auditd_py.store.verification import VerifyPolicy, verify
from tests.support.archive import Arc
from tests.support.cli import keygen
from tests.support.damage import Mutation, mutate, mutations, sealed

VECTORS = Path(__file__).parent / "vectors"


def outcome(layout: Layout, policy: VerifyPolicy, jobs: int) -> tuple[str, Any]:
    try:
        return ("ok", verify(LocalArchive(layout), policy, jobs=jobs).report.as_dict())
    except AuditdError as exc:
        return ("failed", exc.diagnostics())


def policies(arc: Arc) -> list[VerifyPolicy]:
    return [VerifyPolicy(arc.pk.public_key, arc.vk.mac_key), VerifyPolicy(arc.pk.public_key)]


def test_workers_verify_every_segment_but_the_first(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    for k in range(4):
        arc.seal([b"batch %d line %d" % (k, i) for i in range(50)], max_records=7)
    for policy in policies(arc):
        src = LocalArchive(arc.layout)
        segs = src.list_segments()
        assert len(segs) == 4
        one = verify(src, policy, jobs=1).report

        def make(p: VerifyPolicy = policy, a: LocalArchive = src) -> Verifier:
            return Verifier(
                a.read_identity(),
                a.read_checkpoints(),
                public_key=p.public_key,
                mac_key=p.mac_key,
            )

        par = make()
        assert read_segments(par, src, segs, make, 2) == 3
        assert par.finish() == one
        assert outcome(arc.layout, policy, 2) == ("ok", one.as_dict())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.binary(max_size=120), min_size=1, max_size=8), min_size=2, max_size=4),
    st.one_of(st.none(), st.integers(1, 4)),
    st.lists(st.tuples(st.integers(0, 10), mutations), max_size=2),
)
def test_damaged_archives_fail_alike_in_one_process_and_in_several(
    msgs: list[list[bytes]], max_records: int | None, damage: list[tuple[int, Mutation]]
) -> None:
    with sealed(msgs, max_records) as arc:
        paths = arc.segment_paths()
        for which, m in damage:
            p = paths[which % len(paths)]
            p.write_bytes(mutate(p.read_bytes(), m))
        for policy in policies(arc):
            assert outcome(arc.layout, policy, 1) == outcome(arc.layout, policy, 2)


@pytest.mark.parametrize("name", ["v2-basic", "v2-retained"])
def test_vectors_verify_alike_in_several_processes(name: str, tmp_path: Path) -> None:
    root = tmp_path / name
    shutil.copytree(VECTORS / name, root)
    layout = Layout.at(root)
    pk = PublicKey.from_bytes((root / "keys/public-key.json").read_bytes()).public_key
    vk = VerifyKey.from_bytes((root / "keys/verify-key.json").read_bytes()).mac_key
    for policy in (VerifyPolicy(pk, vk), VerifyPolicy(pk)):
        got = outcome(layout, policy, 3)
        assert got[0] == "ok"
        assert got == outcome(layout, policy, 1)


@pytest.mark.parametrize("mode", ["key", "public-key"])
def test_cli_reports_a_tampered_middle_segment_alike(mode: str, tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w", "host")
    for k in range(4):
        arc.seal(*(b"s%d line%d" % (k, i) for i in range(5)))
    reports = [arc.verify_ok(mode, "--jobs", str(j)) for j in (1, 2)]
    assert reports[0] == reports[1]
    seg = sorted((arc.root / "segments").iterdir())[2]
    seg.write_bytes(seg.read_bytes().replace(b"s2 line3", b"s2 line4"))
    bad = [arc.verify(mode, "--json", "--jobs", str(j)) for j in (1, 2)]
    assert [r.code for r in bad] == [1, 1]
    assert bad[0].report() == bad[1].report()
    assert bad[0].report()["file"] == f"segments/{seg.name}"
