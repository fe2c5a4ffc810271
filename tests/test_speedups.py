"""The compiled per-record loop equals the pure-Python reference.

Same sealed bytes and end state for random batches (messages, sources, events,
attrs, epoch deadlines and record limits, any seq and Merkle stack); same
verdict and the same failure report (error type, message, file, line, seq,
epoch, field, what) for random archives and random damage to them, for both
keys; same reports for every test vector. The attack catalogue and the vector
tests run with the pure loop forced too (``make test``: ``AUDITD_PY_PURE=1``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditd_py.chain import speedups
from auditd_py.chain.encoding import Fields
from auditd_py.chain.keys import PublicKey, VerifyKey
from auditd_py.chain.seal import Sealer, SealerState
from auditd_py.errors import AuditdError
from auditd_py.store.layout import Layout
from auditd_py.store.reader import verify_archive
from tests.support.archive import Arc
from tests.support.damage import Mutation, mutate, mutations, sealed

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VECTORS = Path(__file__).parent / "vectors"
NEVER = 1 << 63


@contextmanager
def pure(flag: bool) -> Iterator[None]:
    before = speedups.force_pure(flag)
    try:
        yield
    finally:
        speedups.force_pure(before)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What a verification gives: its report, or its failure report."""
    try:
        return ("ok", fn())
    except AuditdError as exc:
        return ("failed", exc.diagnostics())


def both(fn: Callable[[], Any]) -> tuple[str, Any]:
    """``fn``'s outcome with the compiled loop; asserts the pure loop gives the same."""
    with pure(False):
        fast = outcome(fn)
    with pure(True):
        slow = outcome(fn)
    assert fast == slow
    return fast


def test_the_compiled_loop_is_built() -> None:
    """The bootstrap installs libsodium-dev, so `pip install` builds the extension."""
    assert speedups.available()
    with pure(False):
        assert speedups.compiled() is not None
        assert speedups.describe().startswith("compiled, libsodium ")
    with pure(True):
        assert speedups.compiled() is None
        assert speedups.describe() == "pure Python, forced by AUDITD_PY_PURE"


# ---------------------------------------------------------------- sealing

text = st.text(max_size=40)
json_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), text)
utf8ish = st.one_of(  # valid UTF-8, random bytes, and valid text cut or spliced with bytes
    st.binary(max_size=300),
    text.map(str.encode),
    st.tuples(text, st.binary(max_size=4), text).map(
        lambda t: t[0].encode() + t[1] + t[2].encode()
    ),
    text.map(lambda t: t.encode()[:-1]),
)
times = st.one_of(st.integers(0, 50), st.integers(0, 4 * 10**18))
fields = st.builds(
    Fields,
    time_ns=times,
    source=st.one_of(st.sampled_from(["app", "kern", "ünïcode", 'q"uote\\', "x\x01y"]), text),
    message=utf8ish,
    event=st.one_of(st.none(), st.none(), text),
    attrs=st.one_of(st.none(), st.just({}), st.dictionaries(text, json_values, max_size=4)),
    raw_attrs=st.one_of(st.none(), st.just(b'{"pos":{"offset":7}}')),
)


@st.composite
def states(draw: st.DrawFn) -> SealerState:
    seq = draw(st.one_of(st.integers(0, 70), st.integers(0, 2**40)))
    node = st.binary(min_size=32, max_size=32)
    return SealerState(
        archive="a",
        epoch=draw(st.integers(0, 2**20)),
        epoch_start=0,
        epoch_first_seq=0,
        mac_key=draw(node),
        sign_seed=bytes(32),
        seq=seq,
        link=draw(node),
        stack=tuple(draw(st.lists(node, min_size=seq.bit_count(), max_size=seq.bit_count()))),
        mac=draw(node),
    )


@settings(SETTINGS, max_examples=250)
@given(
    states(),
    st.lists(fields, max_size=40),
    st.one_of(times, st.just(NEVER)),
    st.one_of(st.none(), st.integers(0, 45)),
)
def test_sealing_gives_the_same_bytes_and_state(
    state: SealerState, batch: list[Fields], deadline: int, extra: int | None
) -> None:
    batch.sort(key=lambda f: f.time_ns)
    limit = None if extra is None else state.seq + extra
    out = []
    for flag in (False, True):
        with pure(flag):
            s = Sealer(state)
            first = s.seal_many(batch, 0, deadline, limit)
            rest = s.seal_many(batch, first[1], NEVER, None)
            one = s.seal(Fields(99, "app", b"one more"))
            out.append((first, rest, one, s.snapshot()))
    assert out[0] == out[1]
    assert out[0][0][1] <= len(batch)


# ---------------------------------------------------------------- verifying


def verify_both_keys(arc: Arc) -> list[tuple[str, Any]]:
    return [both(lambda key=key: arc.verify(key=key).as_dict()) for key in (True, False)]  # type: ignore[misc]


messages = st.lists(
    st.one_of(st.binary(max_size=200), st.just(b'x","source":"auditd-py",')),
    min_size=1,
    max_size=12,
)


@SETTINGS
@given(
    st.lists(messages, min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(1, 5)),
    st.lists(st.tuples(st.integers(0, 10), mutations), max_size=2),
)
def test_verifying_gives_the_same_verdict_and_failure_report(
    msgs: list[list[bytes]], max_records: int | None, damage: list[tuple[int, Mutation]]
) -> None:
    with sealed(msgs, max_records) as arc:
        if not damage:
            assert [o[0] for o in verify_both_keys(arc)] == ["ok", "ok"]
        paths = arc.segment_paths()
        for which, m in damage:
            p = paths[which % len(paths)]
            p.write_bytes(mutate(p.read_bytes(), m))
        verify_both_keys(arc)


@pytest.mark.parametrize("name", ["v2-basic", "v2-retained"])
@pytest.mark.parametrize("key", [True, False], ids=["key", "public-key"])
def test_every_vector_verifies_alike(name: str, key: bool, tmp_path: Path) -> None:
    root = tmp_path / name
    shutil.copytree(VECTORS / name, root)
    layout = Layout.at(root)
    pk = PublicKey.from_bytes((root / "keys/public-key.json").read_bytes()).public_key
    vk = VerifyKey.from_bytes((root / "keys/verify-key.json").read_bytes()).mac_key if key else None
    got = both(lambda: verify_archive(layout, public_key=pk, mac_key=vk).as_dict())
    assert got[0] == "ok"
    assert got[1]["records"] == (12 if name == "v2-basic" else 18)


def test_without_the_extension_the_pure_loop_runs(tmp_path: Path) -> None:
    """An auditor's machine without a compiler: the module is missing, verify still works."""
    arc = Arc(tmp_path)
    arc.seal([b"one", b"two"])
    code = (
        "import sys; sys.modules['auditd_py.chain._fast'] = None\n"  # import raises ImportError
        "from auditd_py.chain import speedups\n"
        "from auditd_py.cli import main\n"
        "print(speedups.describe(), speedups.compiled())\n"
        f"sys.argv = ['auditd-py', 'verify', {str(arc.layout.root)!r}, "
        f"'--public-key', {str(arc.pk_path)!r}]\n"
        "main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pure Python, compiled loop not built None\n")
    assert "intact" in out.stdout
