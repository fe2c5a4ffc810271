"""Format-version-1 test vectors (tests/vectors/, docs/FORMAT.md section 17).

(a) every primitive vector is recomputed with auditd_py (and with the
    independent verifier's primitives);
(b) auditd_py's verifier and the independent verifier both accept the vector
    archive, with the verification key and with the public key;
(c) regenerating the vectors gives byte-identical files;
(d) flipping a byte of a segment makes both verifiers fail.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
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
from auditd_py.chain.keys import (
    PublicKey,
    VerifyKey,
    evolve_mac_key,
    evolve_sign_seed,
    mac_key_at,
    public_key_of,
    sign,
)
from auditd_py.errors import FormatError, IntegrityError
from auditd_py.store.layout import Layout
from auditd_py.store.reader import check_proof, verify_archive
from tests import independent_verifier as iv
from tests.vectors import generate

VECTORS = Path(__file__).resolve().parent / "vectors"
BASIC = VECTORS / generate.BASIC
MODES = ("key", "public-key")


def _x(s: str) -> bytes:
    return bytes.fromhex(s)


@pytest.fixture(scope="module")
def prim() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / generate.PRIMITIVES).read_text("utf-8"))
    return data


def _key_file(mode: str) -> bytes:
    name = "verify-key.json" if mode == "key" else "public-key.json"
    return (BASIC / "keys" / name).read_bytes()


def _reference_verify(archive: Path, mode: str) -> Any:
    vk = VerifyKey.from_bytes(_key_file("key"))
    pk = PublicKey.from_bytes(_key_file("public-key"))
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
    lk = prim["link"]
    assert lk["prev"] == g["link"] and lk["leaf"] == lh["leaf"]
    assert link_hash(_x(lk["prev"]), _x(lk["leaf"])).hex() == lk["link"]
    mc = prim["mac"]
    assert record_mac(_x(mc["key"]), _x(mc["link"])).hex() == mc["mac"]
    cd = prim["checkpoint_digest"]
    assert checkpoint_digest(_x(cd["line_hex"])).hex() == cd["digest"]
    # The independent implementation agrees on every one of them.
    assert iv.leaf(_x(lh["body_hex"])).hex() == lh["leaf"]
    assert iv.node(_x(nh["left"]), _x(nh["right"])).hex() == nh["node"]
    assert iv.genesis(_x(g["identity_hex"])).hex() == g["link"]
    assert iv.link(_x(lk["prev"]), _x(lk["leaf"])).hex() == lk["link"]
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
    assert (r.segments, r.checkpoints, r.warnings) == (3, 6, ())
    assert [(x["seq"], x["segment"], x["offset"]) for x in r.recovered] == [
        (10, "seg-0000000001.jsonl", 1055)
    ]


@pytest.mark.parametrize("mode", MODES)
def test_independent_verifier_accepts(mode: str) -> None:
    r = iv.verify(BASIC, _key_file(mode))
    assert (r.mode, r.records, r.sealed_records, r.unsealed_records) == (mode, 12, 12, 0)
    assert (r.segments, r.checkpoints, r.warnings) == (3, 6, [])
    assert [(x["seq"], x["segment"], x["offset"]) for x in r.recovered] == [
        (10, "seg-0000000001.jsonl", 1055)
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
    assert [o["epoch"] for o in objs] == [0, 0, 0, 0, 1, 3, 4, 4, 4, 4, 4, 5]
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
        "records",
        "interval",
        "interval",
        "close",
        "records",
        "close",
    ]
    assert [c.records for c in cps] == [4, 1, 0, 1, 5, 1]
    tail = (BASIC / "quarantine" / "seg-0000000001.jsonl.1055.tail").read_bytes()
    assert tail == generate.TORN


def test_inclusion_proof_checks_out() -> None:
    proof = json.loads((BASIC / "proofs" / f"seq-{generate.PROOF_SEQ}.json").read_bytes())
    pk = PublicKey.from_bytes(_key_file("public-key")).public_key
    res = check_proof(proof, pk)
    assert (res["seq"], res["tree_size"], res["epoch"]) == (generate.PROOF_SEQ, 12, 5)
    assert iv.check_proof(proof, pk) == 5


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
    dst = tmp_path / "v1-basic"
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


def test_flipped_mac_digit_fails_in_key_mode_only(copy: Path) -> None:
    """The MAC is not covered by the chain or the signatures (FORMAT.md 9, 15.4)."""
    seg = copy / "segments" / "seg-0000000000.jsonl"
    # '0' <-> '1' keeps the digit valid lower-case hex.
    off = _offset_in(seg, 2, lambda line: line.rindex(b'"') - 64 + line[-66:].find(b"0"))
    assert seg.read_bytes()[off : off + 1] == b"0"
    _flip(seg, off)
    _both_fail(copy, "key")
    assert _reference_verify(copy, "public-key").records == 12
    assert iv.verify(copy, _key_file("public-key")).records == 12


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
