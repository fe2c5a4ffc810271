"""Format-version-1 test vectors (tests/vectors/, docs/FORMAT.md section 17).

(a) every primitive vector is recomputed with auditd_py (and with the
    independent verifier's primitives);
(b) auditd_py's verifier and the independent verifier both accept the vector
    archive, with the verification key and with the public key;
(c) regenerating the vectors gives byte-identical files;
(d) flipping a byte of a segment, or changing one MAC digit, makes both
    verifiers fail in both modes;
(e) the corner cases of FORMAT.md (empty or torn-only last segment, a removed
    torn-only segment, meta-record detection, checkpoint windows and mac_head,
    proofs) get the same verdict from both verifiers;
(f) retention (FORMAT.md 16): the retained vector archive verifies, its proof
    checks, and deleted segments, mismatched retention records, interrupted
    deletions, torn-tail records naming deleted segments and forged header
    states get the same verdict from both verifiers.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import (
    SIG_CONTEXT,
    Fields,
    checkpoint_digest,
    encode_body,
    fingerprint,
    genesis_link,
    leaf_hash,
    link_hash,
    node_hash,
    record_mac,
)
from auditd_py.chain.format import NS
from auditd_py.chain.keys import (
    PublicKey,
    VerifyKey,
    evolve_mac_key,
    evolve_sign_seed,
    mac_key_at,
    public_key_of,
    sign,
)
from auditd_py.clock import ManualClock
from auditd_py.errors import FormatError, IntegrityError, ProofError
from auditd_py.store import rotation as header_module  # builds segment headers
from auditd_py.store.layout import Layout
from auditd_py.store.reader import LocalArchive, build_proof, check_proof, verify_archive
from auditd_py.store.segment import read_header
from auditd_py.store.verification import MaxAge, VerifyPolicy, verify
from auditd_py.store.writer import ArchiveWriter, create_archive
from tests import independent_verifier as iv
from tests.vectors import generate

VECTORS = Path(__file__).resolve().parent / "vectors"
BASIC = VECTORS / generate.BASIC
RETAINED = VECTORS / generate.RETAINED
MODES = ("key", "public-key")


def _x(s: str) -> bytes:
    return bytes.fromhex(s)


@pytest.fixture(scope="module")
def prim() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / generate.PRIMITIVES).read_text("utf-8"))
    return data


def _key_file(mode: str, keys: Path = BASIC / "keys") -> bytes:
    name = "verify-key.json" if mode == "key" else "public-key.json"
    return (keys / name).read_bytes()


def _reference_verify(archive: Path, mode: str, keys: Path = BASIC / "keys") -> Any:
    vk = VerifyKey.from_bytes(_key_file("key", keys))
    pk = PublicKey.from_bytes(_key_file("public-key", keys))
    return verify_archive(
        Layout.at(archive),
        public_key=pk.public_key,
        mac_key=vk.mac_key if mode == "key" else None,
    )


# ---------------------------------------------------------------- (a) primitives


def test_hash_primitives(prim: dict[str, Any]) -> None:
    lh = prim["leaf_hash"]
    assert lh["body"].encode() == _x(lh["body_hex"])
    assert leaf_hash(_x(lh["body_hex"])).hex() == lh["leaf"]
    nh = prim["node_hash"]
    assert node_hash(_x(nh["left"]), _x(nh["right"])).hex() == nh["node"]
    g = prim["genesis_link"]
    assert genesis_link(_x(g["identity_hex"])).hex() == g["link"]
    assert _x(g["identity_hex"]) == (BASIC / "archive.json").read_bytes()
    lf = prim["link_first"]
    assert lf["prev"] == g["link"] and lf["leaf"] == lh["leaf"] and lf["prev_mac"] == "00" * 32
    assert link_hash(_x(lf["prev"]), _x(lf["prev_mac"]), _x(lf["leaf"])).hex() == lf["link"]
    lk = prim["link"]
    assert lk["prev"] == g["link"] and lk["leaf"] == lh["leaf"] and lk["prev_mac"] == "33" * 32
    assert link_hash(_x(lk["prev"]), _x(lk["prev_mac"]), _x(lk["leaf"])).hex() == lk["link"]
    assert lk["link"] != lf["link"]
    mc = prim["mac"]
    assert record_mac(_x(mc["key"]), _x(mc["link"])).hex() == mc["mac"]
    cd = prim["checkpoint_digest"]
    assert checkpoint_digest(_x(cd["line_hex"])).hex() == cd["digest"]
    # The independent implementation agrees on every one of them.
    assert iv.leaf(_x(lh["body_hex"])).hex() == lh["leaf"]
    assert iv.node(_x(nh["left"]), _x(nh["right"])).hex() == nh["node"]
    assert iv.genesis(_x(g["identity_hex"])).hex() == g["link"]
    assert iv.link(_x(lf["prev"]), _x(lf["prev_mac"]), _x(lf["leaf"])).hex() == lf["link"]
    assert iv.link(_x(lk["prev"]), _x(lk["prev_mac"]), _x(lk["leaf"])).hex() == lk["link"]
    assert iv.mac(_x(mc["key"]), _x(mc["link"])).hex() == mc["mac"]
    assert iv.cp_digest(_x(cd["line_hex"])).hex() == cd["digest"]


def test_key_chains(prim: dict[str, Any]) -> None:
    kc = prim["key_chain"]
    m0, s0 = _x(kc["mac_key_0"]), _x(kc["sign_seed_0"])
    assert m0 + s0 == generate.RANDOM
    m, s = m0, s0
    for ep in kc["epochs"]:
        e = ep["epoch"]
        assert m.hex() == ep["mac_key"] == mac_key_at(m0, e).hex()
        assert s.hex() == ep["sign_seed"]
        assert public_key_of(s).hex() == ep["public_key"]
        assert fingerprint(public_key_of(s)) == ep["public_key_fingerprint"]
        assert iv.fingerprint(_x(ep["public_key"])) == ep["public_key_fingerprint"]
        assert iv.next_mac_key(m) == evolve_mac_key(m)
        assert iv.next_sign_seed(s) == evolve_sign_seed(s)
        m, s = evolve_mac_key(m), evolve_sign_seed(s)
    # Epoch 0's public key is the archive's; each checkpoint names the next one.
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    assert pk.hex() == kc["epochs"][0]["public_key"]
    cp1 = Checkpoint.from_line((BASIC / "checkpoints" / "cp-0000000001.json").read_bytes())
    assert cp1.public_key.hex() == kc["epochs"][1]["public_key"]
    assert cp1.next_public_key.hex() == kc["epochs"][2]["public_key"]
    sg = prim["signature"]
    msg = _x(sg["message_hex"])
    assert SIG_CONTEXT + msg == _x(sg["signed_bytes_hex"])
    assert sign(_x(sg["seed"]), msg).hex() == sg["signature"]


def test_merkle(prim: dict[str, Any]) -> None:
    mk = prim["merkle"]
    leaves = [_x(x) for x in mk["leaves"]]
    assert leaves == [leaf_hash(b"leaf %d" % i) for i in range(8)]
    assert mk["empty_root"] == merkle.EMPTY_ROOT.hex() == "00" * 32
    for r in mk["roots"]:
        assert merkle.root_of(leaves[: r["size"]]).hex() == r["root"]
        stack: list[bytes] = []
        for i, lf in enumerate(leaves[: r["size"]]):
            iv.merkle_append(stack, i, lf)
        assert iv.merkle_root(stack).hex() == r["root"]
    for inc in mk["inclusion"]:
        index, size = inc["index"], inc["size"]
        pb = merkle.PathBuilder(index, size)
        for lf in leaves[:size]:
            pb.feed(lf)
        path = pb.path()
        assert [p.hex() for p in path] == inc["path"]
        assert inc["leaf"] == leaves[index].hex()
        merkle.verify_inclusion(index, size, leaves[index], path, _x(inc["root"]))
        assert iv.root_from_path(index, size, leaves[index], path).hex() == inc["root"]


def test_bodies(prim: dict[str, Any]) -> None:
    for b in prim["bodies"]:
        f = Fields(b["time_ns"], b["source"], _x(b["message_hex"]), b["event"], b["attrs"])
        body = encode_body(b["seq"], b["epoch"], f)
        assert body.hex() == b["body_hex"]
        assert body.decode("utf-8") == b["body"]
        # The original bytes come back from message / raw_b64 (FORMAT.md 8.2).
        line = body + b',"link":"' + b"0" * 64 + b'","mac":"' + b"0" * 64 + b'"}'
        assert iv.record_bytes(line) == _x(b["message_hex"])


# ---------------------------------------------------------------- (b) the vector archive


@pytest.mark.parametrize("mode", MODES)
def test_reference_verifier_accepts(mode: str) -> None:
    r = _reference_verify(BASIC, mode)
    assert (r.mode, r.records, r.sealed_records, r.unsealed_records) == (mode, 12, 12, 0)
    assert (r.segments, r.checkpoints, r.warnings) == (3, 7, ())
    assert [(x["seq"], x["segment"], x["offset"]) for x in r.recovered] == [
        (10, "seg-0000000001.jsonl", 1284)
    ]


@pytest.mark.parametrize("mode", MODES)
def test_independent_verifier_accepts(mode: str) -> None:
    r = iv.verify(BASIC, _key_file(mode))
    assert (r.mode, r.records, r.sealed_records, r.unsealed_records) == (mode, 12, 12, 0)
    assert (r.segments, r.checkpoints, r.warnings) == (3, 7, [])
    assert [(x["seq"], x["segment"], x["offset"]) for x in r.recovered] == [
        (10, "seg-0000000001.jsonl", 1284)
    ]


def test_anchor_with_both_verifiers() -> None:
    anchor = (BASIC / "checkpoints" / "cp-0000000003.json").read_bytes()
    vk = VerifyKey.from_bytes(_key_file("key"))
    r = verify_archive(
        Layout.at(BASIC), public_key=vk.public_key, mac_key=vk.mac_key, anchor=anchor
    )
    assert r.anchor_epoch == 3
    assert iv.verify(BASIC, _key_file("key"), anchor=anchor).anchor_epoch == 3


def test_vector_archive_content() -> None:
    """The archive holds what FORMAT.md section 17 says it does."""
    lines = [
        line
        for seg in sorted((BASIC / "segments").iterdir())
        for line in seg.read_bytes().split(b"\n")
        if line.startswith(b"{")
    ]
    objs = [orjson.loads(line) for line in lines]
    assert [o["seq"] for o in objs] == list(range(12))
    assert [o["epoch"] for o in objs] == [1, 1, 1, 1, 2, 4, 5, 5, 5, 5, 5, 6]
    assert "raw_b64" in objs[2] and "\ufffd" in objs[2]["message"]
    assert "\x00" in objs[3]["message"]
    assert "\n" in objs[4]["message"] and b"\n" not in lines[4]
    assert [o.get("event") for o in objs if o["source"] == "auditd-py"] == [
        "segment.opened",
        "segment.opened",
        "segment.opened",
        "recovery.torn_tail",
    ]
    cps = [Checkpoint.from_line(p.read_bytes()) for p in sorted(BASIC.glob("checkpoints/*"))]
    assert [c.reason for c in cps] == [
        "genesis",
        "records",
        "interval",
        "interval",
        "close",
        "records",
        "close",
    ]
    assert [c.records for c in cps] == [0, 4, 1, 0, 1, 5, 1]
    # Each checkpoint's mac_head is the MAC of the last record it covers (zeros if none).
    macs = [_x(o["mac"]) for o in objs]
    assert [c.mac_head for c in cps] == [
        macs[c.seq_end - 1] if c.seq_end else bytes(32) for c in cps
    ]
    # Checkpoint 0's window starts at the archive's creation (C8).
    assert cps[0].start == json.loads((BASIC / "archive.json").read_bytes())["created"]
    tail = (BASIC / "quarantine" / "seg-0000000001.jsonl.1284.tail").read_bytes()
    assert tail == generate.TORN


def test_inclusion_proof_checks_out() -> None:
    proof = json.loads((BASIC / "proofs" / f"seq-{generate.PROOF_SEQ}.json").read_bytes())
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    res = check_proof(proof, pk)
    assert (res["seq"], res["tree_size"], res["epoch"]) == (generate.PROOF_SEQ, 12, 6)
    assert iv.check_proof(proof, pk) == 6


# ---------------------------------------------------------------- (c) determinism


def test_regenerating_is_byte_identical(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    fresh, committed = generate.vector_files(tmp_path), generate.vector_files(VECTORS)
    assert sorted(fresh) == sorted(committed)
    for name, data in fresh.items():
        assert data == committed[name], f"{name} differs: rerun tests/vectors/generate.py"


# ---------------------------------------------------------------- (d) tampering


def _both_fail(archive: Path, mode: str) -> None:
    with pytest.raises((IntegrityError, FormatError)):
        _reference_verify(archive, mode)
    with pytest.raises(iv.VerificationError):
        iv.verify(archive, _key_file(mode))


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dst = tmp_path / "v2-basic"
    shutil.copytree(BASIC, dst)
    return dst


def _offset_in(seg: Path, line_no: int, where: Callable[[bytes], int]) -> int:
    lines = seg.read_bytes().split(b"\n")
    return sum(len(x) + 1 for x in lines[: line_no - 1]) + where(lines[line_no - 1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("segment", "line_no", "where"),
    [
        ("seg-0000000000.jsonl", 2, lambda line: line.index(b"hello")),  # message
        ("seg-0000000000.jsonl", 1, lambda line: line.index(b'"segment":"') + 12),  # header
        ("seg-0000000000.jsonl", 4, lambda line: line.index(b'"time":') + 8),  # time
        ("seg-0000000001.jsonl", 3, lambda line: len(line) - 148 + 9),  # link hex
        ("seg-0000000002.jsonl", 3, len),  # the final newline
        ("seg-0000000002.jsonl", 2, lambda line: line.index(b'"offset":') + 9),  # R7 offset
    ],
)
def test_flipped_byte_fails_both(
    copy: Path, mode: str, segment: str, line_no: int, where: Callable[[bytes], int]
) -> None:
    seg = copy / "segments" / segment
    _flip(seg, _offset_in(seg, line_no, where))
    _both_fail(copy, mode)


_HEX = "0123456789abcdef"


def _change_mac_digit(seg: Path, line_no: int, digit: int = 17) -> None:
    """Replace one hex digit of a record's MAC with another lower-case hex digit."""
    off = _offset_in(seg, line_no, lambda line: len(line) - 2 - 64 + digit)
    data = bytearray(seg.read_bytes())
    old = chr(data[off])
    assert old in _HEX
    data[off] = ord(_HEX[(_HEX.index(old) + 1) % 16])
    seg.write_bytes(bytes(data))


def _both_fail_with(
    archive: Path, mode: str, what: str, keys: Path = BASIC / "keys"
) -> tuple[IntegrityError, iv.VerificationError]:
    """Both verifiers fail, with the same ``what`` code."""
    with pytest.raises(IntegrityError) as ref:
        _reference_verify(archive, mode, keys)
    assert ref.value.where.get("what") == what, ref.value
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(archive, _key_file(mode, keys))
    assert ind.value.what == what, ind.value
    return ref.value, ind.value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("segment", "line_no", "public_key_what"),
    [
        # A middle record (seq 1): the next record's link covers its MAC (R4).
        ("seg-0000000000.jsonl", 2, "broken_link"),
        # The last record (seq 11): its checkpoint's mac_head covers its MAC (R6).
        ("seg-0000000002.jsonl", 3, "checkpoint_mismatch"),
    ],
)
def test_changed_mac_digit_fails_both_in_both_modes(
    copy: Path, mode: str, segment: str, line_no: int, public_key_what: str
) -> None:
    """A MAC is bound into the next link and the checkpoint (FORMAT.md 9, 12.1, 15.4).

    The MAC stays well-formed lower-case hex, so only the MAC check (key mode)
    or the chain and the signed checkpoint (public-key mode) can catch it.
    """
    seg = copy / "segments" / segment
    _change_mac_digit(seg, line_no)
    _both_fail_with(copy, mode, "mac_mismatch" if mode == "key" else public_key_what)


def test_every_sampled_byte_flip_fails_both_in_key_mode(copy: Path) -> None:
    """A sweep over every segment: each flipped byte is caught by both verifiers."""
    for seg in sorted((copy / "segments").iterdir()):
        size = seg.stat().st_size
        for off in range(3, size, 97):
            _flip(seg, off)
            _both_fail(copy, "key")
            _flip(seg, off)  # restore
    assert _reference_verify(copy, "key").records == 12


def test_missing_first_segment_fails_both(copy: Path) -> None:
    (copy / "segments" / "seg-0000000000.jsonl").unlink()
    for mode in MODES:
        _both_fail(copy, mode)


# ---------------------------------------------------------------- (e) corner cases


def _both_accept(archive: Path, mode: str, keys: Path = BASIC / "keys") -> tuple[Any, iv.Result]:
    return _reference_verify(archive, mode, keys), iv.verify(archive, _key_file(mode, keys))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("content", "warning"), [(b"", "empty last segment"), (generate.TORN, "torn last line")]
)
def test_empty_or_torn_only_last_segment_is_a_warning(
    copy: Path, mode: str, content: bytes, warning: str
) -> None:
    """FORMAT.md 15.6: a last segment with no complete line passes with a warning."""
    (copy / "segments" / "seg-0000000003.jsonl").write_bytes(content)
    ref, ind = _both_accept(copy, mode)
    assert (ref.records, ref.segments, ind.records, ind.segments) == (12, 4, 12, 4)
    assert len(ref.warnings) == len(ind.warnings) == 1
    assert warning in ref.warnings[0] and warning in ind.warnings[0]


@pytest.mark.parametrize("mode", MODES)
def test_empty_segment_that_is_not_last_fails_both(copy: Path, mode: str) -> None:
    (copy / "segments" / "seg-0000000001.jsonl").write_bytes(b"")
    _both_fail_with(copy, mode, "segment_header")


def _resign(cp: Checkpoint, **changes: Any) -> bytes:
    """``cp`` with ``changes``, signed again with its epoch's seed (known for the vectors)."""
    seed = generate.RANDOM[32:]
    for _ in range(cp.epoch):
        seed = evolve_sign_seed(seed)
    return dataclasses.replace(cp, **changes).signed(seed).line + b"\n"


def _cp_path(archive: Path, epoch: int) -> Path:
    return archive / "checkpoints" / f"cp-{epoch:010d}.json"


def _cp(archive: Path, epoch: int) -> Checkpoint:
    return Checkpoint.from_line(_cp_path(archive, epoch).read_bytes())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("epoch", "change"),
    [
        (0, lambda cp: {"start": cp.start + 1}),  # epoch 0 does not start at `created`
        (6, lambda cp: {"end": cp.start - 1}),  # ends before it starts
    ],
)
def test_checkpoint_window_fails_both(
    copy: Path, mode: str, epoch: int, change: Callable[[Checkpoint], dict[str, Any]]
) -> None:
    """C8, on validly signed checkpoints (FORMAT.md 15.2)."""
    cp = _cp(copy, epoch)
    _cp_path(copy, epoch).write_bytes(_resign(cp, **change(cp)))
    _both_fail_with(copy, mode, "checkpoint_window")


@pytest.mark.parametrize("mode", MODES)
def test_signed_wrong_mac_head_fails_both(copy: Path, mode: str) -> None:
    """R6 compares mac_head with the last MAC, even under a valid signature."""
    cp = _cp(copy, 6)
    _cp_path(copy, 6).write_bytes(_resign(cp, mac_head=bytes(32)))
    _both_fail_with(copy, mode, "checkpoint_mismatch")


def test_checkpoint_with_two_newlines_is_a_format_error(copy: Path) -> None:
    """FORMAT.md 12.3: exactly one trailing 0x0A is stripped."""
    p = _cp_path(copy, 2)
    p.write_bytes(p.read_bytes() + b"\n")
    for mode in MODES:
        with pytest.raises(FormatError):
            _reference_verify(copy, mode)
        with pytest.raises(iv.VerificationError) as ind:
            iv.verify(copy, _key_file(mode))
        assert ind.value.check == "C1"


def _new_archive(tmp: Path) -> tuple[Layout, ManualClock]:
    layout = Layout.at(tmp / "archive", tmp / "state")
    create_archive(
        layout,
        tmp / "keys" / "verify-key.json",
        tmp / "keys" / "public-key.json",
        host="test.example",
        now_ns=1_000_000_000,
        random=generate.RANDOM,
    )
    return layout, ManualClock(1_000_000_000)


def _verify_tmp(tmp: Path, mode: str) -> tuple[Any, iv.Result]:
    name = "verify-key.json" if mode == "key" else "public-key.json"
    key = (tmp / "keys" / name).read_bytes()
    vk = VerifyKey.from_bytes((tmp / "keys" / "verify-key.json").read_bytes())
    ref = verify_archive(
        Layout.at(tmp / "archive"),
        public_key=vk.public_key,
        mac_key=vk.mac_key if mode == "key" else None,
    )
    return ref, iv.verify(tmp / "archive", key)


def test_removed_torn_only_segment_passes_both(tmp_path: Path) -> None:
    """R7b: a segment whose only line was torn is cut at offset 0 and removed."""
    layout, clock = _new_archive(tmp_path)
    w = ArchiveWriter.open(layout, clock)
    w.append(Fields(clock.now_ns(), "app", b"one"))
    w.close()
    w = ArchiveWriter.open(layout, clock)  # seg 1: its header is all it holds
    w.abandon()
    seg1 = layout.segments / "seg-0000000001.jsonl"
    seg1.write_bytes(seg1.read_bytes()[:40])  # the header never fully reached the disk
    clock.advance(1)
    w = ArchiveWriter.open(layout, clock)
    w.close()
    assert layout.segment_names() == ["seg-0000000000.jsonl", "seg-0000000002.jsonl"]
    for mode in MODES:
        ref, ind = _verify_tmp(tmp_path, mode)
        assert [(x["segment"], x["offset"]) for x in ref.recovered] == [("seg-0000000001.jsonl", 0)]
        assert [(x["segment"], x["offset"]) for x in ind.recovered] == [("seg-0000000001.jsonl", 0)]
        assert ref.records == ind.records == 4  # 2 headers, "one", the recovery record


def test_meta_records_are_found_by_their_top_level_source(tmp_path: Path) -> None:
    """R7 applies to source "auditd-py" only, not to attrs that imitate it (15.4)."""
    layout, clock = _new_archive(tmp_path)
    w = ArchiveWriter.open(layout, clock)
    with pytest.raises(FormatError):
        w.append(Fields(clock.now_ns(), "auditd-py", b"x", event="daemon.started"))
    with pytest.raises(FormatError):
        w.append_meta("recovery.torn_tail", "x", {})
    # A short body whose attrs hold '"source":"auditd-py",' and an R7 event: not a meta
    # record, so R7 does not apply (the attrs name no segment).
    w.append(
        Fields(
            1,
            "app",
            b"m",
            event="recovery.torn_tail",
            attrs={"a": 0, "source": "auditd-py", "z": 0},
        )
    )
    w.append_meta("daemon.started", "daemon started", {"pid": 1})
    w.close()
    line = (layout.segments / "seg-0000000000.jsonl").read_bytes().split(b"\n")[1]
    # The earlier rule ("source":"auditd-py", within the first 160 bytes) matched it.
    assert b'"source":"auditd-py",' in line[:160]
    for mode in MODES:
        ref, ind = _verify_tmp(tmp_path, mode)
        assert ref.records == ind.records == 3
        assert ref.recovered == () and ind.recovered == []


def _proof_for_epoch_1(genesis_line: bytes) -> dict[str, Any]:
    """An inclusion proof of seq 3 against checkpoints 0 (``genesis_line``) and 1 (size 4)."""
    lines = (BASIC / "segments" / "seg-0000000000.jsonl").read_bytes().split(b"\n")[:4]
    pb = merkle.PathBuilder(3, 4)
    for line in lines:
        pb.feed(leaf_hash(line[:-148]))
    return {
        "v": 1,
        "type": "auditd-py.inclusion-proof",
        "seq": 3,
        "tree_size": 4,
        "record": lines[3].decode(),
        "path": [p.hex() for p in pb.path()],
        "checkpoints": [
            genesis_line.rstrip(b"\n").decode(),
            _cp(BASIC, 1).line.decode(),
        ],
    }


def _both_reject_proof(proof: dict[str, Any]) -> None:
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    with pytest.raises(IntegrityError):
        check_proof(proof, pk)
    with pytest.raises(iv.VerificationError):
        iv.check_proof(proof, pk)


def test_proof_checkpoint_0_must_start_the_chain() -> None:
    """FORMAT.md 14: checkpoint 0 of a proof has prev = zeros and seq_first = 0."""
    cp0 = _cp(BASIC, 0)
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    good = _proof_for_epoch_1(cp0.line)
    assert check_proof(good, pk)["epoch"] == 1 and iv.check_proof(good, pk) == 1
    _both_reject_proof(_proof_for_epoch_1(_resign(cp0, prev=b"\x11" * 32)))
    _both_reject_proof(_proof_for_epoch_1(_resign(cp0, seq_first=1)))


def test_proof_checkpoints_share_one_archive() -> None:
    proof = json.loads((BASIC / "proofs" / f"seq-{generate.PROOF_SEQ}.json").read_bytes())
    last = _cp(BASIC, 6)
    proof["checkpoints"][-1] = _resign(last, archive="00000000-0000-4000-8000-000000000000")
    proof["checkpoints"][-1] = proof["checkpoints"][-1].rstrip(b"\n").decode()
    _both_reject_proof(proof)


def test_unsealed_meta_record_that_is_not_json_fails_both(copy: Path) -> None:
    """Anyone can chain an unsealed record (public-key mode checks no MAC): R7's parse.

    The body is linked correctly, claims source "auditd-py" and is not JSON; both
    verifiers report a format error instead of crashing.
    """
    seg = copy / "segments" / "seg-0000000002.jsonl"
    last = seg.read_bytes().split(b"\n")[-2]
    head, pmac = _x(last[-139:-75].decode()), _x(last[-66:-2].decode())
    body = b'{"seq":12,"epoch":7,"time":1,"ts":"x","source":"auditd-py",,"message":"m"'
    lk = link_hash(head, pmac, leaf_hash(body))
    forged = body + b',"link":"' + lk.hex().encode() + b'","mac":"' + b"0" * 64 + b'"}\n'
    seg.write_bytes(seg.read_bytes() + forged)
    with pytest.raises(FormatError) as ref:
        _reference_verify(copy, "public-key")
    assert ref.value.where.get("what") == "format"
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(copy, _key_file("public-key"))
    assert (ind.value.check, ind.value.what) == ("R7", "format")
    _both_fail_with(copy, "key", "mac_mismatch")


# ---------------------------------------------------------------- (f) retention

RETAINED_KEYS = RETAINED / "keys"
#: The retention records of v2-retained: (seq, segment, seq_first, seq_end, policy).
RETAINED_DELETIONS = [
    (10, "seg-0000000000.jsonl", 0, 4, "max_segments"),
    (17, "seg-0000000001.jsonl", 4, 8, "max_age"),
]


def _deletions(items: Any) -> list[tuple[Any, ...]]:
    return [(x["seq"], x["segment"], x["seq_first"], x["seq_end"], x["policy"]) for x in items]


@pytest.mark.parametrize("mode", MODES)
def test_retained_vector_verifies_with_both(mode: str) -> None:
    """v2-retained starts at seq 8 (FORMAT.md 16.2): 18 of 26 records are present."""
    ref, ind = _both_accept(RETAINED, mode, RETAINED_KEYS)
    assert (ref.mode, ref.first_seq, ref.records, ref.sealed_records, ref.unsealed_records) == (
        mode,
        8,
        18,
        18,
        0,
    )
    assert (ind.mode, ind.first_seq, ind.records, ind.sealed_records, ind.unsealed_records) == (
        mode,
        8,
        18,
        18,
        0,
    )
    assert (ref.segments, ref.checkpoints, ref.warnings, ref.recovered) == (3, 9, (), ())
    assert (ind.segments, ind.checkpoints, ind.warnings, ind.recovered) == (3, 9, [], [])
    assert _deletions(ref.retention) == _deletions(ind.retention) == RETAINED_DELETIONS


def test_retained_vector_content() -> None:
    """The archive holds what FORMAT.md section 17 says it does."""
    assert sorted(p.name for p in (RETAINED / "segments").iterdir()) == [
        "seg-0000000002.jsonl.zst",
        "seg-0000000003.jsonl",
        "seg-0000000004.jsonl",
    ]
    assert (RETAINED / "archive.json").read_bytes() == (BASIC / "archive.json").read_bytes()
    assert len(list((RETAINED / "checkpoints").iterdir())) == 9
    first = read_header(RETAINED / "segments" / "seg-0000000002.jsonl.zst", "seg-0000000002.jsonl")
    assert (first.seq, first.prev_segment) == (8, "seg-0000000001.jsonl")
    # The case-(b) record states the cut that the first header states (16.3).
    line = (RETAINED / "segments" / "seg-0000000003.jsonl").read_bytes().split(b"\n")[3]
    attrs = orjson.loads(line)["attrs"]
    assert attrs["segment"] == first.prev_segment
    assert (attrs["seq_end"], attrs["last_link"], attrs["last_mac"]) == (
        first.seq,
        first.prev_link,
        first.prev_mac,
    )
    assert tuple(attrs["merkle_range"]) == first.merkle_range
    cp2 = _cp(RETAINED, 2)
    assert attrs["checkpoint"] == {"epoch": 2, "digest": cp2.digest.hex()}
    assert cp2.seq_end == 8


def test_retained_proof_checks_out() -> None:
    """The proof of a record after the cut needs a compact-range node (16.2)."""
    raw = (RETAINED / "proofs" / f"seq-{generate.RETAINED_PROOF_SEQ}.json").read_bytes()
    proof = json.loads(raw)
    pk = PublicKey.from_bytes(_key_file("public-key", RETAINED_KEYS)).public_key
    res = check_proof(proof, pk)
    assert (res["seq"], res["tree_size"], res["epoch"]) == (generate.RETAINED_PROOF_SEQ, 26, 8)
    assert iv.check_proof(proof, pk) == 8
    # The node of the deleted leaves [0, 8) is on the path.
    first = read_header(RETAINED / "segments" / "seg-0000000002.jsonl.zst", "seg-0000000002.jsonl")
    assert first.merkle_range is not None and first.merkle_range[0] in proof["path"]
    # The same proof is built again from the archive (its first segment is compressed).
    layout = Layout.at(RETAINED)
    rebuilt = build_proof(layout, generate.RETAINED_PROOF_SEQ)
    assert orjson.dumps(rebuilt, option=orjson.OPT_INDENT_2) + b"\n" == raw
    assert iv.check_proof(build_proof(layout, 8), pk) == 8  # the first record present


@pytest.mark.parametrize("seq", [0, 3, 7])
def test_build_proof_of_a_deleted_record_raises(seq: int) -> None:
    with pytest.raises(ProofError):
        build_proof(Layout.at(RETAINED), seq)


@pytest.fixture
def retained(tmp_path: Path) -> Path:
    dst = tmp_path / "v2-retained"
    shutil.copytree(RETAINED, dst)
    return dst


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("file", "check"),
    [
        # The first remaining segment: the archive would resume at seg-3, but no
        # retention record accounts for the cut (F3; the records naming seg-0 and
        # seg-1 are earlier deletions, case (c)).
        ("seg-0000000002.jsonl.zst", "F3"),
        # A middle segment: seg-4's header names seg-3 (R5).
        ("seg-0000000003.jsonl", "R5"),
    ],
)
def test_deleted_segment_of_retained_archive_fails_both(
    retained: Path, mode: str, file: str, check: str
) -> None:
    (retained / "segments" / file).unlink()
    _, ind = _both_fail_with(retained, mode, "missing_segment", RETAINED_KEYS)
    assert ind.check == check


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("segment", "key", "what"),
    [
        ("seg-0000000003.jsonl", b'"prev_mac":"', "broken_link"),
        ("seg-0000000004.jsonl", b'"merkle_range":["', "checkpoint_mismatch"),
    ],
)
def test_tampered_header_state_fails_both(
    retained: Path, mode: str, segment: str, key: bytes, what: str
) -> None:
    """R5 compares prev_mac and merkle_range of a non-first header (FORMAT.md 15.5)."""
    seg = retained / "segments" / segment
    data = bytearray(seg.read_bytes())
    off = data.index(key) + len(key)
    data[off] = ord("1" if data[off] == ord("0") else "0")
    seg.write_bytes(bytes(data))
    _, ind = _both_fail_with(retained, mode, what, RETAINED_KEYS)
    assert (ind.check, ind.line) == ("R5", 1)


def _rotated_archive(tmp: Path, segments: int = 3) -> tuple[Layout, ManualClock, ArchiveWriter]:
    """An archive with ``segments`` closed segments of 3 records each, and an open one."""
    layout, clock = _new_archive(tmp)
    w = ArchiveWriter.open(layout, clock)
    for n in range(segments):
        for i in range(2):
            clock.advance(1)
            w.append(Fields(clock.now_ns(), "app", b"segment %d record %d" % (n, i)))
        clock.advance(1)
        w.rotate_segment("test")
    return layout, clock, w


_ZERO_HEX = "00" * 32


def _retention_attrs(layout: Layout, w: ArchiveWriter) -> dict[str, Any]:
    """The attrs ``retire_segment`` would seal for the oldest segment (FORMAT.md 16.3)."""
    x, p = layout.segment_names()[:2]
    head = read_header(layout.segment_path(x), x)
    nxt = read_header(layout.segment_path(p), p)
    assert nxt.merkle_range is not None
    cp = w.covering_checkpoint(nxt.seq)
    return {
        "segment": x,
        "file": x,
        "bytes": layout.segment_path(x).stat().st_size,
        "seq_first": head.seq,
        "seq_end": nxt.seq,
        "last_link": nxt.prev_link,
        "last_mac": nxt.prev_mac,
        "merkle_range": list(nxt.merkle_range),
        "checkpoint": {"epoch": cp.epoch, "digest": cp.digest.hex()},
        "policy": "max_segments",
        "reason": "test",
        "undelivered": False,
        "history": {"count": 0, "digest": _ZERO_HEX},
    }


def _verify_tmp_both(tmp: Path) -> Iterator[tuple[str, Any, iv.Result]]:
    for mode in MODES:
        ref, ind = _verify_tmp(tmp, mode)
        yield mode, ref, ind


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: {"seq_end": a["seq_end"] + 1}, id="seq_end"),
        pytest.param(
            lambda a: {"checkpoint": {**a["checkpoint"], "digest": _ZERO_HEX}}, id="digest"
        ),
        pytest.param(
            lambda a: {"checkpoint": {**a["checkpoint"], "epoch": a["checkpoint"]["epoch"] + 1}},
            id="epoch",
        ),
        pytest.param(lambda a: {"last_link": _ZERO_HEX}, id="last_link"),
        pytest.param(lambda a: {"last_mac": _ZERO_HEX}, id="last_mac"),
        pytest.param(
            lambda a: {"merkle_range": [_ZERO_HEX] * len(a["merkle_range"])}, id="merkle_range"
        ),
        pytest.param(lambda a: {"segment": "seg-0000000009.jsonl"}, id="unknown_segment"),
    ],
)
def test_mismatched_retention_record_fails_both(
    tmp_path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """R8 (FORMAT.md 16.3): a sealed retention record must state the cut exactly.

    ``append_meta`` refuses the reserved event, so the record is sealed with the
    writer's internal ``_seal``, as a compromised writer could; then the segment is
    deleted as ``retire_segment`` would.
    """
    layout, clock, w = _rotated_archive(tmp_path)
    attrs = _retention_attrs(layout, w)
    victim = attrs["segment"]
    attrs.update(change(attrs))
    clock.advance(1)
    w._seal_deletion(attrs, "deleted")
    clock.advance(1)
    w.close()
    layout.segment_path(victim).unlink()
    for mode in MODES:
        _, ind = _both_fail_with(layout.root, mode, "retention", tmp_path / "keys")
        assert ind.check == "R8"


def test_matching_retention_record_sealed_by_hand_passes_both(tmp_path: Path) -> None:
    """The control for the test above: the same record, unchanged, accounts for the cut."""
    layout, clock, w = _rotated_archive(tmp_path)
    attrs = _retention_attrs(layout, w)
    clock.advance(1)
    w._seal_deletion(attrs, "deleted")
    clock.advance(1)
    w.close()
    layout.segment_path(attrs["segment"]).unlink()
    for _, ref, ind in _verify_tmp_both(tmp_path):
        assert ref.first_seq == ind.first_seq == attrs["seq_end"]
        assert ref.records == ind.records


def test_retention_record_without_deletion_is_an_interrupted_deletion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16.3 case (a): record sealed, crash before the unlink: both pass with a warning.

    The next writer completes the deletion; then the archive is retained (16.2).
    """
    layout, clock, w = _rotated_archive(tmp_path)
    monkeypatch.setattr(w, "_unlink_segment", lambda name: None)  # the crash comes first
    clock.advance(1)
    w.retire_segment("seg-0000000000.jsonl", policy="max_segments", detail="test")
    w.abandon()
    assert layout.segment_names()[0] == "seg-0000000000.jsonl"
    for _, ref, ind in _verify_tmp_both(tmp_path):
        assert ref.first_seq == ind.first_seq == 0
        assert ref.records == ind.records == 14
        assert len(ref.warnings) == len(ind.warnings) == 1
        assert "seg-0000000000.jsonl" in ref.warnings[0] and "interrupted" in ref.warnings[0]
        assert "seg-0000000000.jsonl" in ind.warnings[0] and "interrupted" in ind.warnings[0]
        assert _deletions(ref.retention) == _deletions(ind.retention)
    clock.advance(1)
    ArchiveWriter.open(layout, clock).close()
    assert layout.segment_names()[0] == "seg-0000000001.jsonl"
    for _, ref, ind in _verify_tmp_both(tmp_path):
        assert ref.first_seq == ind.first_seq == 3
        assert ref.warnings == () and ind.warnings == []


def test_torn_tail_record_naming_a_retired_segment_passes_both(tmp_path: Path) -> None:
    """R7b: a recovery record may name a segment that retention deleted since."""
    layout, clock = _new_archive(tmp_path)
    w = ArchiveWriter.open(layout, clock)
    clock.advance(1)
    w.append(Fields(clock.now_ns(), "app", b"one"))
    clock.advance(1)
    w.close()
    w = ArchiveWriter.open(layout, clock)
    clock.advance(1)
    w.append(Fields(clock.now_ns(), "app", b"two"))
    w.abandon()
    with open(layout.segments / "seg-0000000001.jsonl", "ab") as fh:
        fh.write(b'{"seq":4,"epo')  # torn: seg-2 will start with a recovery record
    clock.advance(1)
    w = ArchiveWriter.open(layout, clock)
    clock.advance(1)
    w.append(Fields(clock.now_ns(), "app", b"three"))
    clock.advance(1)
    w.rotate_segment("test")
    w.retire_segment("seg-0000000000.jsonl", policy="max_segments", detail="test")
    w.retire_segment("seg-0000000001.jsonl", policy="max_segments", detail="test")
    clock.advance(1)
    w.close()
    assert layout.segment_names() == ["seg-0000000002.jsonl", "seg-0000000003.jsonl"]
    for _, ref, ind in _verify_tmp_both(tmp_path):
        assert [x["segment"] for x in ref.recovered] == ["seg-0000000001.jsonl"]
        assert [x["segment"] for x in ind.recovered] == ["seg-0000000001.jsonl"]
        assert ref.first_seq == ind.first_seq == 4
        assert ref.records == ind.records


@pytest.mark.parametrize(
    ("key", "forge", "non_first", "first"),
    [
        ("prev_mac", lambda v: _ZERO_HEX, "broken_link", "checkpoint_mismatch"),
        (
            "merkle_range",
            lambda v: [_ZERO_HEX, *v[1:]],
            "checkpoint_mismatch",
            "checkpoint_mismatch",
        ),
    ],
)
def test_header_sealed_with_a_false_state_fails_both(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    forge: Callable[[Any], Any],
    non_first: str,
    first: str,
) -> None:
    """A correctly linked, MAC'd and checkpointed header that states a false cut.

    As a non-first segment R5 catches it; as the first segment of a retained
    archive (the retention record copies the same false state) the next
    checkpoint does (16.2: R6 once at the resumed state).
    """
    real = Fields  # the class the module that builds segment headers imported

    def fields(*args: Any, **kwargs: Any) -> Fields:
        f = real(*args, **kwargs)
        if f.event == "segment.opened" and f.attrs and f.attrs["segment"] == "seg-0000000001.jsonl":
            f = dataclasses.replace(f, attrs={**f.attrs, key: forge(f.attrs[key])})
        return f

    monkeypatch.setattr(header_module, "Fields", fields)
    layout, clock, w = _rotated_archive(tmp_path)
    for mode in MODES:
        _, ind = _both_fail_with(layout.root, mode, non_first, tmp_path / "keys")
        assert (ind.check, ind.file) == ("R5", "segments/seg-0000000001.jsonl")
    w.retire_segment("seg-0000000000.jsonl", policy="max_segments", detail="test")
    clock.advance(1)
    w.close()
    for mode in MODES:
        _both_fail_with(layout.root, mode, first, tmp_path / "keys")


def test_retention_record_naming_the_cut_must_match_it(tmp_path: Path) -> None:
    """16.3: a record naming the cut segment is case (b) and must state the cut.

    It cannot pass as an "earlier deletion" (case (c)) although the segment sorts
    before the first one, even when another record has accounted for the cut.
    """
    layout, clock, w = _rotated_archive(tmp_path)
    attrs = _retention_attrs(layout, w)
    for a in (attrs, {**attrs, "last_link": _ZERO_HEX}):
        clock.advance(1)
        w._seal_deletion(a, "deleted")
    clock.advance(1)
    w.close()
    layout.segment_path(attrs["segment"]).unlink()
    for mode in MODES:
        _, ind = _both_fail_with(layout.root, mode, "retention", tmp_path / "keys")
        assert ind.check == "R8"


def test_header_without_the_cut_state_cannot_start_an_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """11.1: headers of older writers lack prev_mac and merkle_range.

    They are checked only when present (R5), so such an archive verifies; but the
    archive cannot start at such a segment (15.5: missing_segment at its header).
    """

    def fields(*args: Any, **kwargs: Any) -> Fields:
        f = Fields(*args, **kwargs)
        if f.event == "segment.opened" and f.attrs and f.attrs["segment"] == "seg-0000000001.jsonl":
            attrs = {k: v for k, v in f.attrs.items() if k not in ("prev_mac", "merkle_range")}
            f = dataclasses.replace(f, attrs=attrs)
        return f

    monkeypatch.setattr(header_module, "Fields", fields)
    layout, clock, w = _rotated_archive(tmp_path)
    clock.advance(1)
    w.close()
    for _, ref, res in _verify_tmp_both(tmp_path):
        assert ref.records == res.records == 13
    (layout.segments / "seg-0000000000.jsonl").unlink()
    for mode in MODES:
        _, ind = _both_fail_with(layout.root, mode, "missing_segment", tmp_path / "keys")
        assert (ind.check, ind.file, ind.line) == ("R5", "segments/seg-0000000001.jsonl", 1)


# ---------------------------------------------------------------- (f) the deletion history


def _long_retained(tmp: Path) -> tuple[Layout, ArchiveWriter]:
    """Four deletions; the records of the first three were retired with seg-3 (16.4)."""
    layout, clock, w = _rotated_archive(tmp, segments=3)  # seg-0..2 closed, seg-3 open
    for policy in ("max_segments", "max_age", "max_total_bytes"):
        clock.advance(1)
        w.retire_segment(layout.segment_names()[0], policy=policy, detail=f"test {policy}")
    for _ in range(2):
        clock.advance(1)
        w.append(Fields(clock.now_ns(), "app", b"after the deletions"))
        clock.advance(1)
        w.rotate_segment("test")
    w.retire_segment(
        "seg-0000000003.jsonl", policy="disk_pressure", detail="full", undelivered=True
    )
    clock.advance(1)
    w.close()
    assert layout.segment_names() == ["seg-0000000004.jsonl", "seg-0000000005.jsonl"]
    return layout, w


def test_verify_lists_every_deletion_since_keygen(tmp_path: Path) -> None:
    """16.4: the deletion records of seg-0..2 went with seg-3; deletions.jsonl keeps them."""
    layout, _ = _long_retained(tmp_path)
    assert len(layout.deletions.read_bytes().splitlines()) == 4
    for mode, ref, ind in _verify_tmp_both(tmp_path):
        want = [
            ("seg-0000000000.jsonl", 0, 3, "max_segments", False),
            ("seg-0000000001.jsonl", 3, 7, "max_age", False),
            ("seg-0000000002.jsonl", 7, 11, "max_total_bytes", False),
            ("seg-0000000003.jsonl", 11, 17, "disk_pressure", True),
        ]
        for got in (ref.retention, ind.retention):
            assert [
                (x["segment"], x["seq_first"], x["seq_end"], x["policy"], x["in_archive"])
                for x in got
            ] == want, mode
        assert _deletions(ref.retention) == _deletions(ind.retention)
        assert [x["undelivered"] for x in ref.retention] == [False, False, False, True]
        assert ref.first_seq == ind.first_seq == 17


def _drop_line(i: int) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: lines[:i] + lines[i + 1 :]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_drop_line(0), id="first entry removed"),
        pytest.param(_drop_line(1), id="middle entry removed"),
        pytest.param(_drop_line(3), id="last entry removed"),
        pytest.param(lambda ls: [], id="file emptied"),
        pytest.param(lambda ls: [ls[1], ls[0], *ls[2:]], id="entries swapped"),
        pytest.param(lambda ls: [*ls, ls[-1]], id="entry added"),
        pytest.param(
            lambda ls: [ls[0].replace(b"test max_segments", b"test max_segmentz"), *ls[1:]],
            id="reason changed",
        ),
    ],
)
def test_tampered_deletion_history_fails_both(
    tmp_path: Path, mode: str, edit: Callable[[list[bytes]], list[bytes]]
) -> None:
    """16.4: removing, reordering, adding or changing an entry of deletions.jsonl fails."""
    layout, _ = _long_retained(tmp_path)
    lines = layout.deletions.read_bytes().splitlines()
    layout.deletions.write_bytes(b"".join(x + b"\n" for x in edit(lines)))
    _both_fail_with(layout.root, mode, "retention", tmp_path / "keys")


@pytest.mark.parametrize("mode", MODES)
def test_deleted_deletion_history_fails_both(tmp_path: Path, mode: str) -> None:
    layout, _ = _long_retained(tmp_path)
    layout.deletions.unlink()
    _both_fail_with(layout.root, mode, "retention", tmp_path / "keys")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: {"file": "seg-0000000001.jsonl"}, id="file"),
        pytest.param(lambda a: {"bytes": -1}, id="bytes"),
        pytest.param(lambda a: {"policy": "whim"}, id="policy"),
        pytest.param(lambda a: {"reason": 7}, id="reason"),
        pytest.param(lambda a: {"undelivered": 0}, id="undelivered"),
        pytest.param(lambda a: {"extra": 1}, id="extra field"),
        pytest.param(lambda a: {"history": {"count": 1, "digest": _ZERO_HEX}}, id="history"),
        pytest.param(
            lambda a: {"checkpoint": {**a["checkpoint"], "more": 1}}, id="checkpoint fields"
        ),
    ],
)
def test_every_field_of_a_retention_record_is_checked(
    tmp_path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """R8.1 (issue 12): file, bytes, policy, reason, undelivered and history too."""
    layout, clock, w = _rotated_archive(tmp_path)
    attrs = _retention_attrs(layout, w)
    victim = attrs["segment"]
    attrs.update(change(attrs))
    clock.advance(1)
    w._seal_deletion(attrs, "deleted")
    clock.advance(1)
    w.close()
    layout.segment_path(victim).unlink()
    for mode in MODES:
        _, ind = _both_fail_with(layout.root, mode, "retention", tmp_path / "keys")
        assert ind.check == "R8"


def test_an_earlier_deletion_cannot_carry_another_segments_values(tmp_path: Path) -> None:
    """Case (c) of 16.3 with R8.5: a record for seg-0 stating seg-1's range fails."""
    layout, clock, w = _rotated_archive(tmp_path)
    first = _retention_attrs(layout, w)
    x0, x1 = layout.segment_names()[:2]
    h1 = read_header(layout.segment_path(x1), x1)
    wrong = {**first, "seq_first": h1.seq}  # seg-0's record, seg-1's first seq
    wrong["seq_end"] = first["seq_end"] + 3
    clock.advance(1)
    w.retire_segment(x0, policy="max_segments", detail="real")
    clock.advance(1)
    w.retire_segment(x1, policy="max_segments", detail="real")
    clock.advance(1)
    w.close()
    for _, ref, ind in _verify_tmp_both(tmp_path):
        assert len(ref.retention) == len(ind.retention) == 2
    # The same archive, but seg-1's record sealed by a writer that lies about its range.
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    layout, clock, w = _rotated_archive(tmp2)
    clock.advance(1)
    w.retire_segment(x0, policy="max_segments", detail="real")
    lie = _retention_attrs(layout, w)
    lie.update(seq_first=0, history={"count": 1, "digest": w._deletion_history()[1].hex()})
    clock.advance(1)
    w._seal_deletion(lie, "deleted")
    clock.advance(1)
    w.close()
    layout.segment_path(x1).unlink()
    for mode in MODES:
        _, err = _both_fail_with(layout.root, mode, "retention", tmp2 / "keys")
        assert err.check == "R8"


# ---------------------------------------------------------------- the genesis checkpoint (12.6)


def test_genesis_checkpoint_vector(prim: dict[str, Any]) -> None:
    """Checkpoint 0 is keygen's signature over the empty tree and the identity's bytes."""
    g = prim["genesis_checkpoint"]
    identity = g["identity"].encode()
    line = g["line"].encode()
    assert identity == (BASIC / "archive.json").read_bytes()
    assert line + b"\n" == (BASIC / "checkpoints" / "cp-0000000000.json").read_bytes()
    assert line + b"\n" == (RETAINED / "checkpoints" / "cp-0000000000.json").read_bytes()
    cp = Checkpoint.from_line(line)
    assert (cp.epoch, cp.reason, cp.seq_first, cp.seq_end) == (0, "genesis", 0, 0)
    assert cp.chain_head == genesis_link(identity) == _x(g["chain_head"])
    assert cp.public_key == _x(g["signed_by"]) and cp.signature_valid(cp.public_key)
    assert cp.digest.hex() == g["digest"] == iv.cp_digest(line).hex()
    ind = iv.parse_checkpoint(line, file="genesis")
    assert (ind.reason, ind.chain_head) == ("genesis", iv.genesis(identity))


def _both_fail_code(archive: Path, mode: str, what: str, keys: Path) -> None:
    """Both verifiers fail with ``what`` (an IntegrityError in the reference)."""
    with pytest.raises(IntegrityError) as ref:
        _reference_verify(archive, mode, keys)
    assert ref.value.where.get("what") == what, ref.value
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(archive, _key_file(mode, keys))
    assert ind.value.what == what, ind.value


def _wipe(archive: Path, keep_genesis: bool) -> None:
    for p in (archive / "segments").iterdir():
        p.unlink()
    for p in sorted((archive / "checkpoints").iterdir())[1 if keep_genesis else 0 :]:
        p.unlink()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", [generate.BASIC, generate.RETAINED])
@pytest.mark.parametrize(
    ("attack", "what"),
    [
        (lambda a: _wipe(a, keep_genesis=False), "missing_genesis"),  # the wipe
        (lambda a: (a / "checkpoints" / "cp-0000000000.json").unlink(), "missing_genesis"),
        (lambda a: shutil.rmtree(a / "checkpoints"), "missing_genesis"),
        (lambda a: shutil.rmtree(a / "segments"), "truncated"),
    ],
    ids=["wipe", "delete-cp-0", "rmdir-checkpoints", "rmdir-segments"],
)
def test_wiped_archive_fails_both(
    tmp_path: Path, mode: str, vector: str, attack: Callable[[Path], None], what: str
) -> None:
    """G1 and FORMAT.md 3: a wipe that keeps archive.json is caught with either key."""
    archive = tmp_path / vector
    shutil.copytree(VECTORS / vector, archive)
    attack(archive)
    _both_fail_code(archive, mode, what, VECTORS / vector / "keys")


def test_a_wipe_down_to_the_genesis_is_caught_by_staleness_not_by_g1(tmp_path: Path) -> None:
    """What the genesis cannot show (12.6): an archive cut back to it looks fresh."""
    archive = tmp_path / "basic"
    shutil.copytree(BASIC, archive)
    _wipe(archive, keep_genesis=True)
    for mode in MODES:
        assert _reference_verify(archive, mode).records == 0
        assert iv.verify(archive, _key_file(mode)).records == 0
    genesis = _cp(BASIC, 0)
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    stale = MaxAge(3600 * NS, genesis.end + 3601 * NS)  # verified an hour after keygen
    with pytest.raises(IntegrityError) as exc:
        verify(LocalArchive(Layout.at(archive)), VerifyPolicy(pk, max_age=stale))
    assert (exc.value.where["what"], exc.value.where["epoch"]) == ("stale", 0)


def _identity_edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        obj = json.loads(data)
        out = edit(obj)
        return out if isinstance(out, bytes) else json.dumps(obj, separators=(",", ":")).encode()

    return apply


#: Edits of archive.json from the issue, each keeping archive, created and public_key:
#: (edit of the bytes, the reference's failure: a ``what`` or "format").
IDENTITY_EDITS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "host": (lambda b: b.replace(b'"vectors.example"', b'"elsewhere.example"'), "identity"),
    "reorder": (
        _identity_edit(
            lambda o: json.dumps(dict(reversed(o.items())), separators=(",", ":")).encode() + b"\n"
        ),
        "identity",
    ),
    "reindent": (_identity_edit(lambda o: json.dumps(o, indent=2).encode() + b"\n"), "identity"),
    "no-final-newline": (lambda b: b.rstrip(b"\n"), "identity"),
    "extra-key": (lambda b: b.replace(b'{"v":2,', b'{"v":2,"note":"x",'), "identity"),
    "upper-case-key": (
        lambda b: re.sub(
            rb'"public_key":"([0-9a-f]+)"', lambda m: b'"public_key":"' + m[1].upper() + b'"', b
        ),
        "format",
    ),
    "upper-case-fingerprint": (
        lambda b: re.sub(
            rb'"public_key_fingerprint":"([0-9a-f]+)"',
            lambda m: b'"public_key_fingerprint":"' + m[1].upper() + b'"',
            b,
        ),
        "format",
    ),
    "v-true": (lambda b: b.replace(b'{"v":2,', b'{"v":true,'), "format"),
    "v-float": (lambda b: b.replace(b'{"v":2,', b'{"v":2.0,'), "format"),
    "v-1": (lambda b: b.replace(b'{"v":2,', b'{"v":1,'), "format"),
    "duplicate-key": (lambda b: b.replace(b'{"v":2,', b'{"v":2,"host":"x",'), "format"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", [generate.BASIC, generate.RETAINED])
@pytest.mark.parametrize("edit", sorted(IDENTITY_EDITS))
def test_identity_edit_fails_both(tmp_path: Path, mode: str, vector: str, edit: str) -> None:
    """G2 and section 5: archive.json is authenticated byte for byte, record 0 or not."""
    archive = tmp_path / vector
    shutil.copytree(VECTORS / vector, archive)
    change, what = IDENTITY_EDITS[edit]
    path = archive / "archive.json"
    before = path.read_bytes()
    path.write_bytes(change(before))
    assert path.read_bytes() != before
    keys = VECTORS / vector / "keys"
    if what == "format":
        with pytest.raises(FormatError):
            _reference_verify(archive, mode, keys)
        with pytest.raises(iv.VerificationError) as ind:
            iv.verify(archive, _key_file(mode, keys))
        assert ind.value.check == "I", ind.value
    else:
        _both_fail_code(archive, mode, what, keys)


# ---------------------------------------------------------------- strictness (1, 3, 11.4)


def _zst(archive: Path) -> Path:
    return archive / "segments" / "seg-0000000002.jsonl.zst"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[:-4]),  # the frame's checksum cut
        lambda p: p.write_bytes(p.read_bytes()[:-40]),  # cut inside the frame
        lambda p: p.write_bytes(b""),  # 0 bytes: no frame
        lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])),
    ],
    ids=["checksum-cut", "truncated", "empty", "bad-checksum"],
)
def test_damaged_zstd_segment_is_a_format_failure_naming_it(
    retained: Path, mode: str, damage: Callable[[Path], None]
) -> None:
    damage(_zst(retained))
    with pytest.raises(IntegrityError) as ref:
        _reference_verify(retained, mode, RETAINED_KEYS)
    assert ref.value.where.get("what") == "format"
    assert ref.value.where.get("file") == "segments/seg-0000000002.jsonl.zst"
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(retained, _key_file(mode, RETAINED_KEYS))
    assert (ind.value.check, ind.value.file) == ("S", "segments/seg-0000000002.jsonl.zst")


def _gzip_of(zst: Path) -> bytes:
    return gzip.compress(iv.read_segment(zst))


@pytest.mark.parametrize("mode", MODES)
def test_zst_wins_over_gz(retained: Path, mode: str) -> None:
    """Section 3: without a plain file, ``.zst`` is the segment and ``.gz`` is ignored."""
    gz = retained / "segments" / "seg-0000000002.jsonl.gz"
    gz.write_bytes(b"not gzip at all")
    assert _reference_verify(retained, mode, RETAINED_KEYS).records == 18
    assert iv.verify(retained, _key_file(mode, RETAINED_KEYS)).records == 18
    gz.write_bytes(_gzip_of(_zst(retained)))  # a good .gz does not rescue a bad .zst
    _zst(retained).write_bytes(_zst(retained).read_bytes()[:-4])
    with pytest.raises(IntegrityError):
        _reference_verify(retained, mode, RETAINED_KEYS)
    with pytest.raises(iv.VerificationError):
        iv.verify(retained, _key_file(mode, RETAINED_KEYS))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-4], lambda b: b[:10], lambda b: b""],
    ids=["trailer-cut", "truncated", "empty"],
)
def test_damaged_gzip_segment_is_a_format_failure_naming_it(
    retained: Path, mode: str, damage: Callable[[bytes], bytes]
) -> None:
    gz = retained / "segments" / "seg-0000000002.jsonl.gz"
    gz.write_bytes(damage(_gzip_of(_zst(retained))))
    _zst(retained).unlink()
    with pytest.raises(IntegrityError) as ref:
        _reference_verify(retained, mode, RETAINED_KEYS)
    assert ref.value.where.get("what") == "format"
    assert ref.value.where.get("file") == "segments/seg-0000000002.jsonl.gz"
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(retained, _key_file(mode, RETAINED_KEYS))
    assert (ind.value.check, ind.value.file) == ("S", "segments/seg-0000000002.jsonl.gz")


@pytest.mark.parametrize(
    "attrs",
    [
        b'{"segment":"a","segment":"b"}',  # a duplicate key
        b'{"n":NaN}',
        b'{"n":Infinity}',
        b'{"s":"\\ud800"}',  # a lone surrogate, escaped
        b'{"s":"\xed\xa0\x80"}',  # ... and encoded
    ],
    ids=["duplicate-key", "nan", "infinity", "lone-surrogate-escaped", "lone-surrogate-utf8"],
)
def test_unsealed_meta_record_that_is_not_strict_json_fails_both(copy: Path, attrs: bytes) -> None:
    """Section 1: what a verifier parses is strict JSON (R7 parses meta records)."""
    seg = copy / "segments" / "seg-0000000002.jsonl"
    last = seg.read_bytes().split(b"\n")[-2]
    head, pmac = _x(last[-139:-75].decode()), _x(last[-66:-2].decode())
    body = (
        b'{"seq":12,"epoch":7,"time":1,"ts":"x","source":"auditd-py","event":"e",'
        b'"message":"m","attrs":' + attrs
    )
    lk = link_hash(head, pmac, leaf_hash(body))
    forged = body + b',"link":"' + lk.hex().encode() + b'","mac":"' + b"0" * 64 + b'"}\n'
    seg.write_bytes(seg.read_bytes() + forged)
    with pytest.raises(FormatError) as ref:
        _reference_verify(copy, "public-key")
    assert (ref.value.where.get("what"), ref.value.where.get("field")) == ("format", "json")
    with pytest.raises(iv.VerificationError) as ind:
        iv.verify(copy, _key_file("public-key"))
    assert (ind.value.check, ind.value.what) == ("R7", "format")


@pytest.mark.parametrize("v", [True, 1.0, 2])
def test_proof_version_must_be_the_integer_1(v: object) -> None:
    proof = json.loads((BASIC / "proofs" / f"seq-{generate.PROOF_SEQ}.json").read_bytes())
    proof["v"] = v
    _both_reject_proof(proof)
