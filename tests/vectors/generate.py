"""Generate the archive-format-version-2 test vectors (docs/FORMAT.md, "Test vectors").

Run from the repository root::

    .venv/bin/python tests/vectors/generate.py          # rewrite tests/vectors/
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if they would change

Everything is deterministic: the key material is fixed (``RANDOM``), time comes
from a :class:`~auditd_py.clock.ManualClock`, and Ed25519 signatures are
deterministic, so a second run produces byte-identical files.

Outputs:

* ``v2-basic/``: an archive (``archive.json``, ``segments/``, ``checkpoints/``,
  ``quarantine/``; not the sealing state), its two key files under ``keys/``
  and an inclusion proof under ``proofs/`` as printed by ``auditd-py prove``;
* ``v2-retained/``: the same for an archive whose two oldest segments were
  deleted by retention (two ``retention.deleted`` records) and whose first
  remaining segment is compressed with zstd (``ZSTD_LEVEL`` of
  :mod:`auditd_py.store.compress`; the output is pinned by the zstandard
  version the project installs);
* ``v2-primitives.json``: individual hash, MAC, key-evolution, Merkle and
  record-body vectors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import GENESIS
from auditd_py.chain.encoding import (
    FORMAT_TAG,
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
from auditd_py.chain.keys import evolve_mac_key, evolve_sign_seed, public_key_of, sign
from auditd_py.chain.seal import Sealer, SealerState
from auditd_py.clock import ManualClock
from auditd_py.store.compress import compress_segment
from auditd_py.store.layout import Layout
from auditd_py.store.reader import build_proof
from auditd_py.store.writer import ArchiveWriter, EpochPolicy, create_archive

VECTORS = Path(__file__).resolve().parent
BASIC = "v2-basic"
RETAINED = "v2-retained"
PRIMITIVES = "v2-primitives.json"

#: The 64 "random" bytes of keygen: MAC key m[0] = 00..1f, signing seed s[0] = 20..3f.
RANDOM = bytes(range(64))
#: Creation time of the archive (2025-11-26T05:06:05.123456789Z).
T0 = 1_764_133_565_123_456_789
HOST = "vectors.example"
#: Epochs end after 4 records or 60 s, whichever comes first.
POLICY = EpochPolicy(interval_ns=60 * NS, max_records=4)
#: The record whose inclusion proof is written to ``proofs/``.
PROOF_SEQ = 3
#: The record of ``v2-retained`` whose inclusion proof is written to ``proofs/``: a data
#: record in the compressed segment, whose path needs nodes of the compact range at the cut.
RETAINED_PROOF_SEQ = 13
#: Bytes left without a final newline at the end of segment 1 (a torn write).
TORN = b'{"seq":9,"epoch":5,"time":17641337'

#: A message that tries to start a second record: a newline, then a whole line
#: of JSON that imitates a sealed record. It is stored as one escaped string.
FORGERY = (
    b'first line\n{"seq":5,"epoch":1,"time":0,"ts":"1970-01-01T00:00:00.000000000Z",'
    b'"source":"auditd-py","message":"forged","link":"'
    + b"0" * 64
    + b'","mac":"'
    + b"0" * 64
    + b'"}\n'
)


def _build_archive(work: Path) -> Layout:
    """Seal the vector archive under ``work``; returns its layout.

    keygen writes the genesis checkpoint (epoch 0, no records). Then three writer
    sessions, 12 records (seq 0..11), 3 segments, 7 checkpoints in all:

    * session 1 (segment 0): header; a plain message; invalid UTF-8; a NUL
      byte; then epoch 1 ends by record count and the forgery attempt is the
      only record of epoch 2 (ended by interval); epoch 3 ends empty
      (interval); a record with an event and nested attrs is epoch 4, ended by
      ``close``;
    * session 2 (segment 1): header and two records of epoch 5, then the
      writer is abandoned (as in a crash, no checkpoint) and a torn partial
      line is left behind;
    * session 3 (segment 2): the writer adopts the two unsealed records, cuts
      the torn bytes into quarantine/, seals its header and a
      ``recovery.torn_tail`` record (epoch 5 now holds 5 records and ends by
      count), then one more record in epoch 6, ended by ``close``.
    """
    layout = Layout.at(work / "archive", work / "state")
    create_archive(
        layout,
        work / "keys" / "verify-key.json",
        work / "keys" / "public-key.json",
        host=HOST,
        now_ns=T0,
        random=RANDOM,
    )
    clock = ManualClock(T0)

    def rec(dt: float, source: str, message: bytes, **kw: Any) -> Fields:
        clock.advance(dt)
        return Fields(clock.now_ns(), source, message, **kw)

    # Session 1.
    w = ArchiveWriter.open(layout, clock, POLICY)
    w.append(rec(1.5, "app", b"hello, world"))
    w.append(rec(0.25, "app", b"caf\xc3\xa9 then invalid UTF-8: \xff\xfe and a cut \xe2\x82"))
    w.append(rec(0.25, "app", b"a NUL byte here:\x00<-"))
    w.append(rec(0.25, "app", FORGERY))  # ends epoch 1 first (4 records)
    clock.advance(61)
    assert w.maybe_end_epoch() is not None  # epoch 2: the forgery record only
    clock.advance(61)
    assert w.maybe_end_epoch() is not None  # epoch 3: empty
    w.append(
        rec(
            2,
            "sshd",
            "Accepted publickey for álice from 192.0.2.7 port 50022".encode(),
            event="auth.login",
            attrs={"user": "álice", "port": 50022, "tags": ["ssh", None, True], "z": {"b": 1.5}},
        )
    )
    clock.advance(1)
    w.close()  # epoch 4

    # Session 2: two records, then a crash that leaves a torn line.
    clock.advance(30)
    w = ArchiveWriter.open(layout, clock, POLICY)
    w.append(rec(1, "app", b"second session"))
    w.append(rec(1, "app", b"the next line is torn"))
    w.abandon()
    seg1 = layout.segments / "seg-0000000001.jsonl"
    with open(seg1, "ab") as fh:
        fh.write(TORN)

    # Session 3: recovery, one more record, close.
    clock.advance(10)
    w = ArchiveWriter.open(layout, clock, POLICY)
    w.append(rec(1, "app", b"after recovery"))
    clock.advance(1)
    w.close()  # epoch 5 ended by count before "after recovery"; this is epoch 6
    return layout


def _build_retained(work: Path) -> Layout:
    """Seal the retained vector archive under ``work``; returns its layout.

    One writer session, 26 records (seq 0..25), 5 segments created, 3 left:

    * ``seg-0`` (seq 0..3) and ``seg-1`` (seq 4..7): header and data records,
      each closed by a rotation (a ``close`` checkpoint);
    * ``seg-2`` (seq 8..13): header, ``segment.rotated``, the
      ``retention.deleted`` record of ``seg-0`` (policy ``max_segments``; case
      (c) of FORMAT.md 16.3 once ``seg-1`` is gone too), three data records;
      after the next rotation it is compressed with zstd;
    * ``seg-3`` (seq 14..20): header, ``segment.rotated``, a
      ``segment.compressed`` record, the ``retention.deleted`` record of
      ``seg-1`` (policy ``max_age``; case (b): the archive now starts at
      ``seg-2``, seq 8), three data records;
    * ``seg-4`` (seq 21..25): header, ``segment.rotated``, three data records,
      then the session closes.
    """
    layout = Layout.at(work / "archive", work / "state")
    create_archive(
        layout,
        work / "keys" / "verify-key.json",
        work / "keys" / "public-key.json",
        host=HOST,
        now_ns=T0,
        random=RANDOM,
    )
    clock = ManualClock(T0)
    w = ArchiveWriter.open(layout, clock, POLICY)
    n = 0

    def data(count: int) -> None:
        nonlocal n
        for _ in range(count):
            clock.advance(1)
            w.append(Fields(clock.now_ns(), "app", b"retained record %d" % n))
            n += 1

    data(3)  # seg-0: seq 1..3
    clock.advance(1)
    w.rotate_segment("size")
    data(2)  # seg-1: seq 6..7
    clock.advance(1)
    w.rotate_segment("size")
    clock.advance(1)
    w.retire_segment("seg-0000000000.jsonl", policy="max_segments", detail="4 segments > 3")
    data(3)  # seg-2: seq 11..13
    clock.advance(1)
    w.rotate_segment("size")
    done = compress_segment(layout, "seg-0000000002.jsonl", "zstd")
    w.append_meta(
        "segment.compressed",
        f"compressed segment {done.segment} to {done.file}",
        {
            "segment": done.segment,
            "file": done.file,
            "method": done.method,
            "plain_bytes": done.plain_bytes,
            "compressed_bytes": done.compressed_bytes,
            "ratio_permille": done.compressed_bytes * 1000 // done.plain_bytes,
            "duration_ms": 0,  # the real duration would make the vector nondeterministic
        },
    )
    clock.advance(1)
    w.retire_segment(
        "seg-0000000001.jsonl", policy="max_age", detail="closed 2700000s ago > 2592000s"
    )
    data(3)  # seg-3: seq 18..20
    clock.advance(1)
    w.rotate_segment("size")
    data(3)  # seg-4: seq 23..25
    clock.advance(1)
    w.close()
    return layout


def _copy_archive(work: Path, layout: Layout, out: Path, proof_seq: int) -> None:
    """Copy identity, segments, checkpoints, quarantine, keys and a proof to ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copyfile(layout.identity, out / "archive.json")
    if layout.deletions.exists():
        shutil.copyfile(layout.deletions, out / "deletions.jsonl")
    for sub in ("segments", "checkpoints", "quarantine"):
        files = sorted((layout.root / sub).iterdir())
        if not files and sub == "quarantine":
            continue  # an empty directory would not survive version control
        (out / sub).mkdir()
        for p in files:
            shutil.copyfile(p, out / sub / p.name)
    (out / "keys").mkdir()
    for name in ("verify-key.json", "public-key.json"):
        shutil.copyfile(work / "keys" / name, out / "keys" / name)
    (out / "proofs").mkdir()
    proof = build_proof(layout, proof_seq)  # exactly what `auditd-py prove` prints
    (out / "proofs" / f"seq-{proof_seq}.json").write_bytes(
        orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n"
    )


# ---------------------------------------------------------------- primitives


def _hx(b: bytes) -> str:
    return b.hex()


def primitives(identity_bytes: bytes) -> dict[str, Any]:
    """The primitive vectors, as a JSON-ready dict (see v2-primitives.json)."""
    m0, s0 = RANDOM[:32], RANDOM[32:]
    body = encode_body(1, 0, Fields(T0, "app", b"hello, world"))
    leaf = leaf_hash(body)
    left, right = bytes([0x11]) * 32, bytes([0x22]) * 32
    prev = genesis_link(identity_bytes)
    # Record 0 links to the genesis link and 32 zero bytes in place of a previous
    # MAC; every later record links to its predecessor's link and MAC. A non-zero
    # previous MAC pins the order of the three inputs.
    link_first = link_hash(prev, bytes(32), leaf)
    prev_mac = bytes([0x33]) * 32
    link = link_hash(prev, prev_mac, leaf)

    epochs = []
    m, s = m0, s0
    for e in range(4):
        epochs.append(
            {
                "epoch": e,
                "mac_key": _hx(m),
                "sign_seed": _hx(s),
                "public_key": _hx(public_key_of(s)),
                "public_key_fingerprint": fingerprint(public_key_of(s)),
            }
        )
        m, s = evolve_mac_key(m), evolve_sign_seed(s)

    leaves = [leaf_hash(b"leaf %d" % i) for i in range(8)]
    roots = [{"size": n, "root": _hx(merkle.root_of(leaves[:n]))} for n in range(9)]
    inclusion = []
    for size in (7, 8):
        for index in range(size):
            pb = merkle.PathBuilder(index, size)
            for lf in leaves[:size]:
                pb.feed(lf)
            inclusion.append(
                {
                    "index": index,
                    "size": size,
                    "leaf": _hx(leaves[index]),
                    "path": [_hx(p) for p in pb.path()],
                    "root": _hx(merkle.root_of(leaves[:size])),
                }
            )

    bodies = []
    body_inputs: list[tuple[int, int, Fields]] = [
        (0, 0, Fields(T0, "app", b"plain")),
        (1, 0, Fields(T0 + 1, "app", b"\xff\xfe bad \xc3")),
        (2, 1, Fields(1_000_000_000, "app", b'nul\x00 tab\t cr\r lf\n quote" slash\\ /')),
        (3, 1, Fields(0, "k\u00e9rn", "\u00e9\u2028\U0001f600".encode())),
        (
            4,
            2,
            Fields(
                T0,
                "auditd-py",
                b"m",
                event="segment.opened",
                attrs={"segment": "seg-0000000000.jsonl", "prev_segment": None, "first_seq": 4},
            ),
        ),
        (5, 7, Fields(T0, "x", b"", event="e", attrs={})),
    ]
    for seq, epoch, f in body_inputs:
        b = encode_body(seq, epoch, f)
        bodies.append(
            {
                "seq": seq,
                "epoch": epoch,
                "time_ns": f.time_ns,
                "source": f.source,
                "message_hex": _hx(f.message),
                "event": f.event,
                "attrs": f.attrs,
                "body": b.decode("utf-8"),
                "body_hex": _hx(b),
            }
        )

    sig_msg = b"any message"
    cp_line = b'{"v":1,"type":"auditd-py.checkpoint"}'
    return {
        "format": FORMAT_TAG.decode(),
        "about": (
            "Primitive vectors of auditd-py format version 1 (docs/FORMAT.md). Every "
            "value is lower-case hex unless named otherwise. H(tag, x) = BLAKE2b, "
            "32-byte digest, unkeyed unless a key is given, over tag || x."
        ),
        "leaf_hash": {"body": body.decode("utf-8"), "body_hex": _hx(body), "leaf": _hx(leaf)},
        "node_hash": {"left": _hx(left), "right": _hx(right), "node": _hx(node_hash(left, right))},
        "genesis_link": {
            "format_tag": FORMAT_TAG.decode(),
            "identity_hex": _hx(identity_bytes),
            "link": _hx(prev),
        },
        "link_first": {
            "prev": _hx(prev),
            "prev_mac": _hx(bytes(32)),
            "leaf": _hx(leaf),
            "link": _hx(link_first),
        },
        "link": {
            "prev": _hx(prev),
            "prev_mac": _hx(prev_mac),
            "leaf": _hx(leaf),
            "link": _hx(link),
        },
        "mac": {"key": _hx(m0), "link": _hx(link), "mac": _hx(record_mac(m0, link))},
        "key_chain": {"mac_key_0": _hx(m0), "sign_seed_0": _hx(s0), "epochs": epochs},
        "signature": {
            "seed": _hx(s0),
            "message_hex": _hx(sig_msg),
            "signed_bytes_hex": _hx(SIG_CONTEXT + sig_msg),
            "signature": _hx(sign(s0, sig_msg)),
        },
        "checkpoint_digest": {"line_hex": _hx(cp_line), "digest": _hx(checkpoint_digest(cp_line))},
        "genesis_checkpoint": _genesis_checkpoint(identity_bytes),
        "merkle": {
            "leaves_are": 'leaf_hash(b"leaf %d") for i = 0..7',
            "leaves": [_hx(x) for x in leaves],
            "empty_root": _hx(merkle.EMPTY_ROOT),
            "roots": roots,
            "inclusion": inclusion,
        },
        "bodies": bodies,
    }


def _genesis_checkpoint(identity_bytes: bytes) -> dict[str, Any]:
    """Checkpoint 0 of the vector archives (FORMAT.md 12.6), as keygen signs it."""
    archive = orjson.loads(identity_bytes)["archive"]
    genesis = genesis_link(identity_bytes)
    state = SealerState.genesis(archive, genesis, RANDOM[:32], RANDOM[32:], T0)
    cp = Sealer(state).checkpoint(T0, GENESIS)
    return {
        "identity": identity_bytes.decode(),
        "chain_head_is": "genesis_link(identity)",
        "chain_head": _hx(genesis),
        "signed_by": _hx(public_key_of(RANDOM[32:])),
        "line": cp.line.decode(),
        "digest": _hx(cp.digest),
    }


# ---------------------------------------------------------------- driver


def generate(out: Path) -> None:
    """Write ``v2-basic/``, ``v2-retained/`` and ``v2-primitives.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="auditd-vectors-") as tmp:
        work = Path(tmp)
        layout = _build_archive(work)
        _copy_archive(work, layout, out / BASIC, PROOF_SEQ)
        identity_bytes = layout.identity.read_bytes()
    with tempfile.TemporaryDirectory(prefix="auditd-vectors-") as tmp:
        work = Path(tmp)
        layout = _build_retained(work)
        _copy_archive(work, layout, out / RETAINED, RETAINED_PROOF_SEQ)
    text = json.dumps(primitives(identity_bytes), indent=2, ensure_ascii=False)
    (out / PRIMITIVES).write_text(text + "\n", encoding="utf-8")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes), for comparisons."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def vector_files(root: Path) -> dict[str, bytes]:
    """The generated files under a vectors directory (not this script)."""
    files = {f"{name}/{k}": v for name in (BASIC, RETAINED) for k, v in tree(root / name).items()}
    files[PRIMITIVES] = (root / PRIMITIVES).read_bytes()
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=VECTORS, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare, do not write")
    a = ap.parse_args(argv)
    if not a.check:
        generate(a.out)
        print(f"wrote {a.out / BASIC}, {a.out / RETAINED} and {a.out / PRIMITIVES}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, old = vector_files(Path(tmp)), vector_files(a.out)
    if fresh != old:
        changed = sorted(k for k in fresh.keys() | old.keys() if fresh.get(k) != old.get(k))
        print("vectors differ: " + ", ".join(changed), file=sys.stderr)
        return 1
    print("vectors are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
