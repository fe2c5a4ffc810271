"""Property tests (hypothesis) for the chain invariants, with both verifiers.

Every sealed archive verifies and gives back its messages byte for byte; every
single-byte change, deletion, duplication, reordering, insertion or truncation
of sealed record lines makes both the key and the public-key verifier fail.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditd_py.chain import merkle
from auditd_py.chain.encoding import Fields, encode_body, leaf_hash, record_bytes, split_line
from auditd_py.chain.keys import PublicKey
from auditd_py.chain.verify import Verifier
from auditd_py.errors import FormatError, IntegrityError
from auditd_py.store.reader import LocalArchive, iter_records
from auditd_py.store.verification import VerifyPolicy, check
from tests.support.archive import Arc

messages = st.lists(st.binary(max_size=300), min_size=1, max_size=25)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def archive(msgs: list[list[bytes]], max_records: int | None) -> Iterator[Arc]:
    d = Path(tempfile.mkdtemp(prefix="adp-prop-"))
    try:
        arc = Arc(d)
        for batch in msgs:
            arc.seal(batch, max_records=max_records)
        yield arc
    finally:
        shutil.rmtree(d)


def lines_of(arc: Arc) -> list[tuple[Path, list[bytes]]]:
    return [(p, p.read_bytes().splitlines(keepends=True)) for p in arc.segment_paths()]


def both_fail(arc: Arc) -> None:
    for key in (True, False):
        with pytest.raises((IntegrityError, FormatError)):
            arc.verify(key=key)


batches = st.lists(messages, min_size=1, max_size=3)
epoch_sizes = st.one_of(st.none(), st.integers(min_value=1, max_value=7))


@SETTINGS
@given(batches, epoch_sizes)
def test_round_trip(msgs: list[list[bytes]], max_records: int | None) -> None:
    with archive(msgs, max_records) as arc:
        for key in (True, False):
            r = arc.verify(key=key)
            assert r.unsealed_records == 0
        got = [record_bytes(obj) for _, obj in iter_records(arc.layout) if obj["source"] == "test"]
        assert got == [m for batch in msgs for m in batch]
        # one physical line per record: no message can forge a second record
        total = sum(len(lines) for _, lines in lines_of(arc))
        assert total == r.records


@SETTINGS
@given(batches, epoch_sizes, st.data())
def test_any_byte_change_is_detected(
    msgs: list[list[bytes]], max_records: int | None, data: st.DataObject
) -> None:
    with archive(msgs, max_records) as arc:
        segs = arc.segment_paths()
        path = data.draw(st.sampled_from(segs))
        raw = bytearray(path.read_bytes())
        i = data.draw(st.integers(0, len(raw) - 1))
        new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
        raw[i] = new
        path.write_bytes(bytes(raw))
        both_fail(arc)


OPS = ["delete", "duplicate", "swap", "insert", "truncate"]


@SETTINGS
@given(batches, epoch_sizes, st.sampled_from(OPS), st.data())
def test_line_edits_are_detected(
    msgs: list[list[bytes]], max_records: int | None, op: str, data: st.DataObject
) -> None:
    with archive(msgs, max_records) as arc:
        segs = lines_of(arc)
        path, lines = data.draw(st.sampled_from(segs))
        i = data.draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            if len(lines) < 2:
                lines.append(lines[0])  # degenerate: becomes a duplication
            else:
                j = data.draw(st.integers(0, len(lines) - 1).filter(lambda j: j != i))
                lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            other_path, other = data.draw(st.sampled_from(segs))
            lines.insert(i, data.draw(st.sampled_from(other)))
            del other_path
        else:  # truncate: drop the tail of the segment from line i on
            lines = lines[:i]
        path.write_bytes(b"".join(lines))
        both_fail(arc)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_merkle_inclusion_paths(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    root = merkle.root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    b = merkle.PathBuilder(index, size)
    for leaf in leaves:
        b.feed(leaf)
    path = b.path()
    merkle.verify_inclusion(index, size, leaves[index], path, root)
    # the same path must not prove another leaf or another position
    with pytest.raises(IntegrityError):
        merkle.verify_inclusion(index, size, leaf_hash(b"other"), path, root)
    if size > 1:
        other = (index + 1) % size
        with pytest.raises(IntegrityError):
            merkle.verify_inclusion(other, size, leaves[index], path, root)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH written recursively, as a reference for the compact range."""
    from auditd_py.chain.encoding import node_hash

    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k << 1 < len(leaves):
        k <<= 1
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


@given(st.integers(0, 200))
def test_compact_range_root_matches_rfc6962(size: int) -> None:
    leaves = [leaf_hash(b"x%d" % i) for i in range(size)]
    assert merkle.root_of(leaves) == _mth(leaves)


@given(
    st.integers(0, 2**40),
    st.integers(0, 2**20),
    st.integers(0, 2**62),
    st.text(min_size=1, max_size=40),
    st.binary(max_size=500),
)
def test_body_is_one_json_line_and_round_trips(
    seq: int, epoch: int, t: int, source: str, msg: bytes
) -> None:
    import orjson

    body = encode_body(seq, epoch, Fields(t, source, msg))
    line = body + b',"link":"' + b"0" * 64 + b'","mac":"' + b"1" * 64 + b'"}'
    assert b"\n" not in line and b"\r" not in line
    obj = orjson.loads(line)
    assert (obj["seq"], obj["epoch"], obj["time"], obj["source"]) == (seq, epoch, t, source)
    assert record_bytes(obj) == msg
    assert split_line(line)[0] == body


@SETTINGS
@given(batches, epoch_sizes, st.data())
def test_mac_digit_change_is_detected_by_both_verifiers(
    msgs: list[list[bytes]], max_records: int | None, data: st.DataObject
) -> None:
    """MACs are bound into the next link (and the last one into the checkpoint)."""
    with archive(msgs, max_records) as arc:
        segs = lines_of(arc)
        path, lines = data.draw(st.sampled_from(segs))
        i = data.draw(st.integers(0, len(lines) - 1))
        line = bytearray(lines[i])
        pos = len(line) - 3 - data.draw(st.integers(0, 63))  # inside the mac hex
        old = chr(line[pos])
        line[pos] = ord(data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != old])))
        lines[i] = bytes(line)
        path.write_bytes(b"".join(lines))
        both_fail(arc)


# ---------------------------------------------------------------- genesis, --all


_VECTOR = Path(__file__).resolve().parent / "vectors" / "v2-retained"


def _vector_inputs() -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    cps = sorted((_VECTOR / "checkpoints").iterdir())
    pk = PublicKey.from_bytes((_VECTOR / "keys" / "public-key.json").read_bytes())
    items = [(f"checkpoints/{p.name}", p.read_bytes()) for p in cps]
    return (_VECTOR / "archive.json").read_bytes(), items, pk.public_key


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_archive_json_fails_before_any_record(data: st.DataObject) -> None:
    """G2: the genesis checkpoint signs archive.json byte for byte (retained vector:
    record 0 is gone), so every edit fails when the checkpoints are read."""
    identity, items, pk = _vector_inputs()
    i = data.draw(st.integers(0, len(identity) - 1))
    op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
    b = data.draw(st.integers(0, 255))
    if op == "flip":
        edited = identity[:i] + bytes([identity[i] ^ (b or 1)]) + identity[i + 1 :]
    elif op == "delete":
        edited = identity[:i] + identity[i + 1 :]
    else:
        edited = identity[:i] + bytes([b]) + identity[i:]
    with pytest.raises((FormatError, IntegrityError)):
        Verifier(edited, items, public_key=pk)


@SETTINGS
@given(batches, epoch_sizes, st.data())
def test_keep_going_reports_the_same_first_failure(
    msgs: list[list[bytes]], max_records: int | None, data: st.DataObject
) -> None:
    """``verify --all`` lists the failure plain verify stops at, first."""
    with archive(msgs, max_records) as arc:
        segs = arc.segment_paths()
        seg = data.draw(st.sampled_from(segs))
        raw = bytearray(seg.read_bytes())
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        seg.write_bytes(bytes(raw))
        policy = VerifyPolicy(arc.pk.public_key, arc.vk.mac_key)
        first = check(LocalArchive(arc.layout), policy)
        every = check(LocalArchive(arc.layout), policy, keep_going=True)
        assert len(first.failures) == 1 and every.failures
        assert every.failures[0].where == first.failures[0].where
        assert every.failures[0].message == first.failures[0].message
