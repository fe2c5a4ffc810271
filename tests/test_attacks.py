"""Attack catalogue: tamper with a sealed archive on disk, check that verify catches it.

Every attack starts from a clean archive built through the tool (3 seals of 5
lines with ``--epoch-records 2``: 3 segments, 18 records, 9 epochs after the
genesis checkpoint's epoch 0, so 10 checkpoints), changes
files on disk, and asserts that *both* ``verify --key`` and ``verify
--public-key`` exit 1 and that the ``--json`` report names what failed and
where (file, line, seq). Where an attack is undetectable by a verifier by
design, the test says so and shows what does catch it (``--anchor``,
``--require-sealed``, or the secret key).

The standard archive, seg-k line L holds seq 6k+L-1, and seq s is in epoch s//2+1
(checkpoint 0 is the genesis checkpoint keygen writes over the empty tree):

=====================  ==========  ========
segment                seqs        epochs
=====================  ==========  ========
seg-0000000000.jsonl   0..5        1, 2, 3
seg-0000000001.jsonl   6..11       4, 5, 6
seg-0000000002.jsonl   12..17      7, 8, 9
=====================  ==========  ========

Line 1 of each segment is the ``segment.opened`` header record.

Then: a zero-false-positive set (clean archives of many shapes verify), and bad
input (missing/wrong/loose keys, non-archives, garbage) that must end in one
line on stderr, exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.encoding import (
    Fields,
    encode_body,
    fingerprint,
    genesis_link,
    leaf_hash,
    link_hash,
    seal_line,
    split_line,
)
from auditd_py.chain.format import NS
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import public_key_of
from auditd_py.clock import ManualClock
from auditd_py.store.compress import compress_segment
from auditd_py.store.layout import Layout
from auditd_py.store.state import SavedState, StateFile
from auditd_py.store.writer import ArchiveWriter, EpochPolicy
from tests.support.cli import (
    MODES,
    Archive,
    cp_ref,
    expect_detected,
    keygen,
    one_line_error,
    run_cli,
    run_real,
    seg_ref,
)

SEALS = 3
LINES_PER_SEAL = 5
RECORDS = SEALS * (LINES_PER_SEAL + 1)  # + one header record per segment
EPOCHS = RECORDS // 2 + 1  # checkpoints: the genesis, then one per two records


# Malformed bytes (a stripped MAC or signature, bad hex) are reported as
# FormatError, which by design carries ``field`` but no ``what``
# (docs/FORMAT.md, section 15.8): those tests check ``error`` and ``field`` and
# leave ``what`` unchecked.
FORMAT = None


def seq_at(seg: int, line: int) -> int:
    """The seq of line ``line`` (1-based) of segment ``seg`` in the standard archive."""
    return seg * (LINES_PER_SEAL + 1) + line - 1


def build_standard(work: Path, host: str = "test-host") -> Archive:
    arc = keygen(work, host)
    for k in range(SEALS):
        arc.seal(*(b"s%d line%d" % (k, i) for i in range(LINES_PER_SEAL)))
    return arc


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    arc = build_standard(tmp_path_factory.mktemp("template") / "w")
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert (rep["records"], rep["checkpoints"], rep["segments"]) == (RECORDS, EPOCHS, SEALS)
    return arc


@pytest.fixture(scope="session")
def _other_template(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return build_standard(tmp_path_factory.mktemp("other") / "w", host="other-host")


@pytest.fixture
def arc(_template: Archive, tmp_path: Path) -> Archive:
    """A fresh copy of the standard archive, free to tamper with."""
    return _template.copy_to(tmp_path / "w")


@pytest.fixture
def other(_other_template: Archive, tmp_path: Path) -> Archive:
    """A second, unrelated archive of the same shape (other keys, other id)."""
    return _other_template.copy_to(tmp_path / "other")


def sub_once(pattern: bytes, repl: Callable[[re.Match[bytes]], bytes]) -> Callable[[bytes], bytes]:
    """An edit that applies ``pattern`` → ``repl`` exactly once."""

    def edit(line: bytes) -> bytes:
        new, n = re.subn(pattern, repl, line, count=1)
        assert n == 1, (pattern, line)
        return new

    return edit


def relink(arc: Archive, seg: int, from_line: int) -> None:
    """Recompute every link from ``from_line`` of ``seg`` to the end of that segment.

    What an attacker without the keys can do: the hash chain is public. The
    MACs are left as they were (they cannot be recomputed without the key);
    each link covers the previous record's MAC as stored.
    """
    lines = arc.lines(seg)
    _, prev, prev_mac = split_line(lines[from_line - 2])
    for i in range(from_line - 1, len(lines)):
        body, _, mac = split_line(lines[i])
        link = link_hash(prev, prev_mac, leaf_hash(body))
        lines[i] = seal_line(body, link, mac)[:-1]
        prev, prev_mac = link, mac
    arc.write_lines(seg, lines)


# =============================================================== record attacks


def test_edit_message(arc: Archive) -> None:
    arc.edit_line(1, 3, lambda b: b.replace(b'"message":"s1 line1"', b'"message":"s1 LINE1"'))
    expect_detected(arc, "broken_link", file=seg_ref(1), line=3, seq=seq_at(1, 3))


def test_edit_message_and_relink_the_chain(arc: Archive) -> None:
    # A smarter attacker recomputes the (public) hash chain after the edit. The
    # MAC then no longer matches the link (key mode); the chain head no longer
    # matches the signed checkpoint of the epoch (public-key mode).
    arc.edit_line(1, 3, lambda b: b.replace(b'"message":"s1 line1"', b'"message":"s1 LINE1"'))
    relink(arc, 1, 3)
    # seq 8 is the first record of epoch 5 (seqs 8, 9): the checkpoint check runs
    # after seq 9, line 4.
    for mode, want in (
        ("key", {"what": "mac_mismatch", "line": 3, "seq": 8, "epoch": 5}),
        ("public-key", {"what": "checkpoint_mismatch", "line": 4, "epoch": 5}),
    ):
        rep = arc.verify(mode, "--json").report()
        assert rep["file"] == seg_ref(1)
        assert {k: rep.get(k) for k in want} == want, rep


def test_checkpoint_mismatch_names_seq_of_its_line(arc: Archive) -> None:
    arc.edit_line(1, 3, lambda b: b.replace(b'"message":"s1 line1"', b'"message":"s1 LINE1"'))
    relink(arc, 1, 3)
    expect_detected(
        arc,
        "checkpoint_mismatch",
        modes=("public-key",),
        file=seg_ref(1),
        line=4,
        seq=seq_at(1, 4),
        epoch=5,
    )


def test_edit_seq(arc: Archive) -> None:
    arc.edit_line(1, 3, sub_once(rb'^\{"seq":8,', lambda m: b'{"seq":80,'))
    expect_detected(arc, "gap", file=seg_ref(1), line=3, seq=8, field="seq")


def test_edit_epoch(arc: Archive) -> None:
    arc.edit_line(1, 3, sub_once(rb'"epoch":5,', lambda m: b'"epoch":4,'))
    expect_detected(arc, "wrong_epoch", file=seg_ref(1), line=3, seq=8, field="epoch")


def test_edit_time(arc: Archive) -> None:
    arc.edit_line(
        1, 4, sub_once(rb'"time":(\d+)', lambda m: b'"time":%d' % (int(m.group(1)) - 3600 * NS))
    )
    expect_detected(arc, "broken_link", file=seg_ref(1), line=4, seq=9)


def test_edit_source(arc: Archive) -> None:
    arc.edit_line(2, 2, sub_once(rb'"source":"app"', lambda m: b'"source":"cron"'))
    expect_detected(arc, "broken_link", file=seg_ref(2), line=2, seq=seq_at(2, 2))


def test_edit_segment_header_message(arc: Archive) -> None:
    arc.edit_line(1, 1, lambda b: b.replace(b"segment seg-0000000001.jsonl opened", b"segment ok"))
    expect_detected(arc, "broken_link", file=seg_ref(1), line=1, seq=6)


def test_delete_record(arc: Archive) -> None:
    lines = arc.lines(1)
    del lines[2]  # line 3, seq 8
    arc.write_lines(1, lines)
    # Line 3 now holds seq 9.
    expect_detected(arc, "gap", file=seg_ref(1), line=3, seq=8, field="seq")


def test_delete_record_at_segment_start(arc: Archive) -> None:
    lines = arc.lines(2)
    del lines[0]  # the header record
    arc.write_lines(2, lines)
    expect_detected(arc, "segment_header", file=seg_ref(2), line=1, seq=12)


def test_duplicate_record(arc: Archive) -> None:
    lines = arc.lines(1)
    lines.insert(3, lines[2])  # seq 8 twice, at lines 3 and 4
    arc.write_lines(1, lines)
    expect_detected(arc, "duplicate", file=seg_ref(1), line=4, seq=9, field="seq")


def test_swap_two_records(arc: Archive) -> None:
    lines = arc.lines(1)
    lines[2], lines[3] = lines[3], lines[2]  # seq 8 and 9
    arc.write_lines(1, lines)
    # A streaming verifier sees seq 9 where 8 belongs first: reported as a gap.
    expect_detected(arc, "gap", file=seg_ref(1), line=3, seq=8, field="seq")


def test_swap_records_far_apart(arc: Archive) -> None:
    lines = arc.lines(0)
    lines[1], lines[5] = lines[5], lines[1]  # seq 1 and 5
    arc.write_lines(0, lines)
    expect_detected(arc, "gap", file=seg_ref(0), line=2, seq=1, field="seq")


def forged_line(seq: int, link: bytes, mac: bytes) -> bytes:
    body = encode_body(seq, seq // 2 + 1, Fields(1_800_000_000 * NS, "app", b"forged: all is well"))
    return seal_line(body, link, mac)[:-1]


def test_insert_forged_record_with_made_up_link_and_mac(arc: Archive) -> None:
    lines = arc.lines(1)
    lines.insert(3, forged_line(9, os.urandom(32), os.urandom(32)))
    arc.write_lines(1, lines)
    expect_detected(
        arc, {"key": "mac_mismatch", "public-key": "broken_link"}, file=seg_ref(1), line=4, seq=9
    )


def test_insert_forged_record_with_correct_link(arc: Archive) -> None:
    # The link is public (anyone can hash), the MAC is not: key mode stops at
    # the forged seq 8; public-key mode at the genuine seq 8 that follows it.
    lines = arc.lines(1)
    _, prev_link, prev_mac = split_line(lines[1])
    body = encode_body(8, 5, Fields(1_800_000_000 * NS, "app", b"forged: all is well"))
    link = link_hash(prev_link, prev_mac, leaf_hash(body))
    lines.insert(2, seal_line(body, link, os.urandom(32))[:-1])
    arc.write_lines(1, lines)
    expect_detected(arc, "mac_mismatch", modes=("key",), file=seg_ref(1), line=3, seq=8)
    expect_detected(arc, "duplicate", modes=("public-key",), file=seg_ref(1), line=4, seq=9)


def flip_mac_digit(line: bytes) -> bytes:
    return sub_once(rb'"mac":"(.)', lambda m: b'"mac":"%x' % ((int(m[1], 16) + 1) % 16))(line)


def test_edit_mac(arc: Archive) -> None:
    # Each link covers the previous record's MAC, so even the public-key verifier
    # sees a changed MAC: at the next record's link.
    arc.edit_line(1, 3, flip_mac_digit)
    expect_detected(arc, "mac_mismatch", modes=("key",), file=seg_ref(1), line=3, seq=8)
    expect_detected(arc, "broken_link", modes=("public-key",), file=seg_ref(1), line=4, seq=9)


def test_edit_mac_of_last_record(arc: Archive) -> None:
    # No next record: the checkpoint's mac_head covers the last MAC of an epoch.
    arc.edit_line(2, 6, flip_mac_digit)
    expect_detected(arc, "mac_mismatch", modes=("key",), file=seg_ref(2), line=6, seq=17)
    rep = arc.verify("public-key", "--json").report()
    assert {k: rep.get(k) for k in ("what", "file", "line", "epoch")} == {
        "what": "checkpoint_mismatch",
        "file": seg_ref(2),
        "line": 6,
        "epoch": 9,
    }, rep


def test_upper_case_mac(arc: Archive) -> None:
    # Hex has two spellings; only the sealed (lower-case) one is accepted.
    arc.edit_line(
        0, 2, sub_once(rb'"mac":"([0-9a-f]{64})"', lambda m: b'"mac":"%s"' % m[1].upper())
    )
    expect_detected(arc, FORMAT, error="FormatError", file=seg_ref(0), line=2, seq=1, field="seal")


# =============================================================== truncation


def test_truncate_tail_mid_epoch(arc: Archive) -> None:
    # The last record (seq 17) belongs to epoch 9, whose checkpoint is present.
    lines = arc.lines(2)
    arc.write_lines(2, lines[:-1])
    expect_detected(arc, "truncated", file=cp_ref(9), epoch=9, seq=17)


def test_truncate_tail_mid_segment_several_epochs(arc: Archive) -> None:
    lines = arc.lines(2)
    arc.write_lines(2, lines[:3])  # keep seqs 12..14; 15 is the 2nd record of epoch 8
    expect_detected(arc, "truncated", file=cp_ref(8), epoch=8, seq=15)


def crash_with_unsealed_tail(arc: Archive, messages: list[bytes]) -> None:
    """A writer seals ``messages`` and dies before its epoch ends (no checkpoint)."""
    clock = ManualClock(time.time_ns())
    w = ArchiveWriter.open(Layout.at(arc.root), clock, EpochPolicy(max_records=100))
    for m in messages:
        w.append(Fields(clock.now_ns(), "app", m))
    w.abandon()  # flushes what was written, no checkpoint: as a crash would


def test_truncate_unsealed_tail(arc: Archive) -> None:
    # Records after the last checkpoint are hash-chained (and MAC'd) but not yet
    # signed. Cutting some of them off is undetectable by design -- nothing
    # signed says they existed -- so plain verify passes and reports them as
    # unsealed; --require-sealed refuses an archive with an unsealed tail at all.
    crash_with_unsealed_tail(arc, [b"tail 1", b"tail 2", b"tail 3"])
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert (rep["records"], rep["sealed_records"], rep["unsealed_records"]) == (22, 18, 4)

    lines = arc.lines(3)  # header + 3 records, all unsealed
    arc.write_lines(3, lines[:-2])
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert (rep["records"], rep["sealed_records"], rep["unsealed_records"]) == (20, 18, 2)
    expect_detected(arc, "unsealed_tail", args=["--require-sealed"], seq=RECORDS)


def test_delete_last_checkpoint(arc: Archive) -> None:
    # Deleting the newest checkpoint turns its records into an unsealed tail:
    # undetectable without a saved anchor; --require-sealed and --anchor catch it.
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(arc.head())
    arc.checkpoint(9).unlink()
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert (rep["sealed_records"], rep["unsealed_records"]) == (16, 2)
    expect_detected(arc, "unsealed_tail", args=["--require-sealed"], seq=16)
    expect_detected(arc, "truncated", args=["--anchor", anchor], file="anchor", epoch=9)


def test_truncate_at_epoch_boundary(arc: Archive) -> None:
    # Remove the last segment and the checkpoints of its epochs (7, 8, 9): what is
    # left is exactly the archive as it was after the second seal, so plain verify
    # passes by design. Only an anchor saved earlier (`head`) reveals the cut.
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(arc.head())
    arc.segment(2).unlink()
    for e in (7, 8, 9):
        arc.checkpoint(e).unlink()
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert (rep["records"], rep["checkpoints"], rep["unsealed_records"]) == (12, 7, 0)
        arc.verify_ok(mode, "--require-sealed")
    expect_detected(arc, "truncated", args=["--anchor", anchor], file="anchor", epoch=9)


def test_stale_archive_fails_with_max_age(arc: Archive) -> None:
    # S1 (FORMAT.md 15.9): the newest checkpoint is older than --max-age. Here the
    # seals ended well over a millisecond before verify starts, and within a day.
    for mode in MODES:
        assert arc.verify_ok(mode, "--max-age", "1d")["checkpoints"] == EPOCHS
    expect_detected(
        arc, "stale", args=["--max-age", "1ms"], file=cp_ref(EPOCHS - 1), epoch=EPOCHS - 1
    )


def test_anchor_from_another_archive(arc: Archive, other: Archive) -> None:
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(other.head())
    expect_detected(arc, "anchor_mismatch", args=["--anchor", anchor], file="anchor")


def test_rewrite_after_theft_caught_only_by_anchor(tmp_path: Path) -> None:
    # Forward security protects the epochs *before* a theft. With the state
    # stolen at epoch 7 (after the second seal), an attacker can cut everything
    # from epoch 7 on and re-seal it differently: the keys are genuine, so plain
    # verify passes by design. An anchor saved by an auditor after epoch 9 catches it.
    arc = keygen(tmp_path / "w")
    for k in range(SEALS):
        if k == SEALS - 1:
            shutil.copytree(arc.state, tmp_path / "stolen-state")
        arc.seal(*(b"s%d line%d" % (k, i) for i in range(LINES_PER_SEAL)))
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(arc.head())

    arc.segment(2).unlink()
    for e in (7, 8, 9):
        arc.checkpoint(e).unlink()
    shutil.rmtree(arc.state)
    shutil.copytree(tmp_path / "stolen-state", arc.state)
    arc.seal(b"s2 line0", b"s2 line1", b"nothing to see", b"s2 line3", b"s2 line4")
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["records"], rep["checkpoints"]) == (RECORDS, EPOCHS)
    expect_detected(arc, "anchor_mismatch", args=["--anchor", anchor], file=cp_ref(9), epoch=9)


# =============================================================== segment attacks


def test_delete_middle_segment(arc: Archive) -> None:
    arc.segment(1).unlink()
    expect_detected(arc, "missing_segment", file=seg_ref(2), line=1, seq=6)


def test_delete_middle_segment_and_its_checkpoints(arc: Archive) -> None:
    arc.segment(1).unlink()
    for e in (4, 5, 6):
        arc.checkpoint(e).unlink()
    expect_detected(arc, "missing_checkpoint", file=cp_ref(7), epoch=4, line=None, seq=None)


def test_swap_two_segments(arc: Archive) -> None:
    tmp = arc.segment(0).with_suffix(".tmp")
    arc.segment(0).rename(tmp)
    arc.segment(1).rename(arc.segment(0))
    tmp.rename(arc.segment(1))
    expect_detected(arc, "segment_swapped", file=seg_ref(0), line=1, seq=0)


def test_replay_segment_under_later_name(arc: Archive) -> None:
    shutil.copy(arc.segment(0), arc.segment(3))
    expect_detected(arc, "segment_swapped", file=seg_ref(3), line=1, seq=RECORDS)


def test_replay_segment_in_place_of_another(arc: Archive) -> None:
    shutil.copy(arc.segment(0), arc.segment(2))
    expect_detected(arc, "segment_swapped", file=seg_ref(2), line=1, seq=12)


def test_garbage_appended_to_middle_segment(arc: Archive) -> None:
    # Bytes without a newline are tolerated only at the very end (a torn write).
    with arc.segment(1).open("ab") as fh:
        fh.write(b'{"seq":12,"epoch":7,')
    expect_detected(arc, "format", file=seg_ref(1), line=7)


# =============================================================== checkpoint attacks


CHECKPOINT_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "seq_end": sub_once(rb'"seq_end":8,', lambda m: b'"seq_end":9,'),
    "chain_head": sub_once(
        rb'"chain_head":"(.)', lambda m: b'"chain_head":"%x' % ((int(m[1], 16) + 1) % 16)
    ),
    "mac_head": sub_once(
        rb'"mac_head":"(.)', lambda m: b'"mac_head":"%x' % ((int(m[1], 16) + 1) % 16)
    ),
    "merkle_root": sub_once(
        rb'"merkle_root":"(.)', lambda m: b'"merkle_root":"%x' % ((int(m[1], 16) + 1) % 16)
    ),
    "reason": sub_once(rb'"reason":"records"', lambda m: b'"reason":"close"'),
    "end": sub_once(rb'"end":(\d+)', lambda m: b'"end":%d' % (int(m[1]) + NS)),
    "next_public_key": sub_once(
        rb'"next_public_key":"(.)',
        lambda m: b'"next_public_key":"%x' % ((int(m[1], 16) + 1) % 16),
    ),
}


@pytest.mark.parametrize("field", sorted(CHECKPOINT_EDITS))
def test_edit_checkpoint_field(arc: Archive, field: str) -> None:
    arc.edit_checkpoint(4, CHECKPOINT_EDITS[field])
    expect_detected(arc, "bad_signature", file=cp_ref(4), epoch=4, line=None, seq=None)


def test_edit_checkpoint_and_resign_with_own_key(arc: Archive) -> None:
    # Re-signing with a key of one's own: the key chain from the public key breaks.
    cp = Checkpoint.from_line(arc.checkpoint(4).read_bytes())
    seed = os.urandom(32)
    forged = dataclasses.replace(
        cp, merkle_root=os.urandom(32), public_key=public_key_of(seed)
    ).signed(seed)
    arc.checkpoint(4).write_bytes(forged.line + b"\n")
    expect_detected(arc, "bad_signature", file=cp_ref(4), epoch=4)
    # C4 (the key chain) fires before C5 (the signature itself) would.
    assert "did not certify" in arc.verify("public-key", "--json").report()["message"]


def test_delete_middle_checkpoint(arc: Archive) -> None:
    arc.checkpoint(4).unlink()
    expect_detected(arc, "missing_checkpoint", file=cp_ref(5), epoch=4)


def test_swap_two_checkpoints(arc: Archive) -> None:
    a, b = arc.checkpoint(3).read_bytes(), arc.checkpoint(4).read_bytes()
    arc.checkpoint(3).write_bytes(b)
    arc.checkpoint(4).write_bytes(a)
    expect_detected(arc, "missing_checkpoint", file=cp_ref(3), epoch=3)


def test_replace_checkpoint_with_one_from_another_archive(arc: Archive, other: Archive) -> None:
    shutil.copy(other.checkpoint(4), arc.checkpoint(4))
    expect_detected(arc, "identity", file=cp_ref(4), line=None, seq=None)


# =============================================================== downgrades (fail closed)


def strip_macs(arc: Archive) -> None:
    for n in range(SEALS):
        arc.write_lines(n, [re.sub(rb',"mac":"[0-9a-f]{64}"', b"", x) for x in arc.lines(n)])


def strip_signatures(arc: Archive) -> None:
    for p in arc.checkpoint_paths():
        p.write_bytes(re.sub(rb',"signature":"[0-9a-f]{128}"', b"", p.read_bytes()))


def test_strip_macs(arc: Archive) -> None:
    strip_macs(arc)
    expect_detected(arc, FORMAT, error="FormatError", file=seg_ref(0), line=1, seq=0, field="seal")


def test_strip_links_and_macs(arc: Archive) -> None:
    for n in range(SEALS):
        arc.write_lines(n, [split_line(x)[0] + b"}" for x in arc.lines(n)])
    expect_detected(arc, FORMAT, error="FormatError", file=seg_ref(0), line=1, seq=0, field="seal")


def test_strip_signatures(arc: Archive) -> None:
    strip_signatures(arc)
    expect_detected(
        arc, FORMAT, error="FormatError", file=cp_ref(0), field="signature", line=None, seq=None
    )


def test_strip_signature_of_one_middle_checkpoint(arc: Archive) -> None:
    arc.edit_checkpoint(5, lambda b: re.sub(rb',"signature":"[0-9a-f]{128}"', b"", b))
    expect_detected(arc, FORMAT, error="FormatError", file=cp_ref(5), field="signature")


def test_replace_public_key_in_archive_json(arc: Archive) -> None:
    # The attacker's own key, with a fingerprint that matches it: archive.json is
    # self-consistent, but the auditor's key (and the verify key) name another.
    ident = Identity.from_bytes(arc.root.joinpath("archive.json").read_bytes())
    mine = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    arc.root.joinpath("archive.json").write_bytes(
        dataclasses.replace(ident, public_key=mine).to_bytes()
    )
    assert orjson.loads(arc.root.joinpath("archive.json").read_bytes())[
        "public_key_fingerprint"
    ] == fingerprint(mine)
    expect_detected(arc, "identity", file="archive.json", field="public_key")


def test_edit_archive_json_host(arc: Archive) -> None:
    # The identity file's bytes seed the chain (genesis link), and the genesis
    # checkpoint signs that link: the edit fails before any record is read (G2).
    path = arc.root / "archive.json"
    path.write_bytes(path.read_bytes().replace(b'"host":"test-host"', b'"host":"elsewhere"'))
    expect_detected(arc, "identity", file="archive.json", line=None, seq=None)


# =============================================================== wipes and the genesis checkpoint


def test_wipe_everything_but_archive_json(arc: Archive) -> None:
    # The wipe: without a genesis checkpoint (FORMAT.md 12.6) this read as
    # a new archive, "intact, 0 records", with either key and --require-sealed.
    for p in [*arc.segment_paths(), *arc.checkpoint_paths()]:
        p.unlink()
    for args in ((), ("--require-sealed",)):
        expect_detected(arc, "missing_genesis", args=args, file=cp_ref(0), line=None, seq=None)


def test_delete_genesis_checkpoint(arc: Archive) -> None:
    arc.checkpoint(0).unlink()
    expect_detected(arc, "missing_genesis", file=cp_ref(1), epoch=1, line=None, seq=None)


@pytest.mark.parametrize(
    ("directory", "what"), [("checkpoints", "missing_genesis"), ("segments", "truncated")]
)
def test_delete_a_directory(arc: Archive, directory: str, what: str) -> None:
    # An integrity failure (exit 1), not "not an archive" (exit 2): archive.json is there.
    shutil.rmtree(arc.root / directory)
    expect_detected(arc, what, file=f"{directory}/", line=None, seq=None)


@pytest.fixture
def retained(arc: Archive) -> Archive:
    """The standard archive after retention deleted seg-0 and seg-1 was compressed."""
    clock = ManualClock(time.time_ns())
    w = ArchiveWriter.open(Layout.at(arc.root), clock, EpochPolicy(max_records=100))
    w.retire_segment("seg-0000000000.jsonl", policy="max_segments", detail="4 segments > 3")
    w.close()
    compress_segment(Layout.at(arc.root), "seg-0000000001.jsonl", "zstd")
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["first_seq"], len(rep["retention"])) == (6, 1)
    return arc


#: Edits of archive.json that keep archive, created and public_key (the issue's
#: list), and what they fail with once record 0 is gone: G2, or the parse (5).
IDENTITY_EDITS: dict[str, tuple[Callable[[bytes], bytes], str | None]] = {
    "host": (lambda b: b.replace(b'"host":"test-host"', b'"host":"elsewhere"'), "identity"),
    "reorder": (
        lambda b: orjson.dumps(dict(reversed(orjson.loads(b).items()))) + b"\n",
        "identity",
    ),
    "reindent": (lambda b: orjson.dumps(orjson.loads(b), option=orjson.OPT_INDENT_2), "identity"),
    "extra-key": (lambda b: b.replace(b'"host":', b'"site":"x","host":'), "identity"),
    "upper-case-hex": (
        lambda b: re.sub(
            rb'"public_key":"([0-9a-f]+)"', lambda m: b'"public_key":"%s"' % m[1].upper(), b
        ),
        FORMAT,
    ),
    "v-true": (lambda b: b.replace(b'{"v":2,', b'{"v":true,'), FORMAT),
    "v-float": (lambda b: b.replace(b'{"v":2,', b'{"v":2.0,'), FORMAT),
    "duplicate-key": (lambda b: b.replace(b'"host":', b'"host":"x","host":'), FORMAT),
}


@pytest.mark.parametrize("edit", sorted(IDENTITY_EDITS))
def test_identity_edit_on_a_retained_archive(retained: Archive, edit: str) -> None:
    # Record 0 (whose link covers archive.json) is deleted; the genesis checkpoint,
    # never deleted, still signs the identity file byte for byte (G2).
    change, what = IDENTITY_EDITS[edit]
    path = retained.root / "archive.json"
    before = path.read_bytes()
    path.write_bytes(change(before))
    assert path.read_bytes() != before
    error = "IntegrityError" if what else "FormatError"
    expect_detected(retained, what, file="archive.json", error=error, line=None, seq=None)


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-4], lambda b: b[: len(b) // 2], lambda b: b""],
    ids=["checksum-cut", "truncated", "empty"],
)
def test_damaged_compressed_segment(retained: Archive, damage: Callable[[bytes], bytes]) -> None:
    # FORMAT.md 11.4: a stream cut inside its frame (even just its checksum) or a
    # 0-byte file is a format failure naming the file, never a shorter segment.
    zst = retained.root / "segments" / "seg-0000000001.jsonl.zst"
    zst.write_bytes(damage(zst.read_bytes()))
    expect_detected(retained, "format", file="segments/seg-0000000001.jsonl.zst")


# =============================================================== verify --all


def _all_failures(arc: Archive, mode: str) -> list[dict[str, object]]:
    r = arc.verify(mode, "--json", "--all")
    assert r.code == 1, str(r)
    rep = r.report()
    assert rep["ok"] is False and rep["failures"][0]["code"] == rep["what"], rep
    plain = arc.verify(mode, "--all")
    assert plain.code == 1 and "Traceback" not in plain.err
    assert len(plain.err.splitlines()) == len(rep["failures"]), plain
    failures: list[dict[str, object]] = rep["failures"]
    return failures


def _where(failures: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(f.get("code"), f.get("file"), f.get("line")) for f in failures]


def test_all_lists_a_failure_in_each_segment(arc: Archive) -> None:
    # FORMAT.md 15.11: after a failure, the next segment resumes from its header.
    arc.edit_line(0, 3, lambda b: b.replace(b'"s0 line1"', b'"s0 LINE1"'))
    arc.edit_line(2, 4, lambda b: b.replace(b'"s2 line2"', b'"s2 LINE2"'))
    assert arc.verify("key", "--json").report()["file"] == seg_ref(0)  # without: the first
    for mode in MODES:
        assert _where(_all_failures(arc, mode)) == [
            ("broken_link", seg_ref(0), 3),
            ("broken_link", seg_ref(2), 4),
        ]


def test_all_goes_on_after_a_checkpoint_to_the_records(arc: Archive) -> None:
    # An edited checkpoint (C5, and C6 at the next one), then a record edit: both are
    # listed. With a checkpoint deleted too (C2), records cannot be placed in epochs
    # any more: the walk over the records is left out (FORMAT.md 15.11).
    arc.edit_checkpoint(4, CHECKPOINT_EDITS["end"])
    arc.edit_line(2, 4, lambda b: b.replace(b'"s2 line2"', b'"s2 LINE2"'))
    failures = _all_failures(arc, "public-key")
    assert _where(failures) == [
        ("bad_signature", cp_ref(4), None),
        ("checkpoint_link", cp_ref(5), None),  # its prev is the digest before the edit
        ("broken_link", seg_ref(2), 4),
    ]
    arc.checkpoint(7).unlink()
    assert [f.get("code") for f in _all_failures(arc, "public-key")] == [
        "bad_signature",
        "checkpoint_link",
        "missing_checkpoint",
    ]


def test_all_on_an_intact_archive(arc: Archive) -> None:
    for mode in MODES:
        assert arc.verify_ok(mode, "--all", "--require-sealed")["records"] == RECORDS


def test_all_reports_the_final_checks_too(arc: Archive) -> None:
    arc.edit_line(0, 3, lambda b: b.replace(b'"s0 line1"', b'"s0 LINE1"'))
    crash_with_unsealed_tail(arc, [b"unsealed"])
    failures = arc.verify("key", "--json", "--all", "--require-sealed").report()["failures"]
    assert [f["code"] for f in failures] == ["broken_link", "unsealed_tail"]


# =============================================================== forward security


def reseal_with_stolen_state(
    arc: Archive,
    stolen_state: Path,
    forged: Path,
    messages: list[bytes],
    epoch_records: int | None = 2,
) -> Archive:
    """Build a forged archive at ``forged`` by re-sealing ``messages`` with the tool.

    The forger copies the public parts of the archive (archive.json, the genesis
    checkpoint, empty segments/), installs the stolen sealing state, rewinds its
    chain head to just after the genesis checkpoint (epoch 1, seq 0) and runs
    ``auditd-py seal``.
    """
    fake = Archive(forged)
    (forged / "keys").mkdir(parents=True)
    shutil.copy(arc.verify_key, fake.verify_key)  # the *real* keys, for verifying
    shutil.copy(arc.public_key, fake.public_key)
    fake.root.mkdir()
    ident = (arc.root / "archive.json").read_bytes()
    (fake.root / "archive.json").write_bytes(ident)
    for d in ("segments", "checkpoints", "quarantine"):
        (fake.root / d).mkdir()
    shutil.copy(arc.checkpoint(0), fake.checkpoint(0))
    genesis = Checkpoint.from_line(arc.checkpoint(0).read_bytes())
    shutil.copytree(stolen_state, fake.state)
    sf, state = StateFile.open(fake.state)
    try:
        sf.save(
            SavedState(
                dataclasses.replace(
                    state.sealer,
                    epoch=1,
                    epoch_start=genesis.end,
                    epoch_first_seq=0,
                    seq=0,
                    link=genesis_link(ident),
                    mac=ZERO,
                    stack=(),
                    prev_checkpoint=genesis.digest,
                )
            )
        )
    finally:
        sf.release()
    fake.seal(*messages, epoch_records=epoch_records)
    return fake


ORIGINAL_FIRST_SEAL = [b"s0 line%d" % i for i in range(LINES_PER_SEAL)]
FORGED_FIRST_SEAL = [b"s0 line0", b"s0 line1", b"nothing happened", b"s0 line3", b"s0 line4"]


def test_forward_security_stolen_state_cannot_reseal_the_past(arc: Archive, tmp_path: Path) -> None:
    stolen = tmp_path / "stolen-state"
    shutil.copytree(arc.state, stolen)  # taken after the seals: epoch 10 keys
    fake = reseal_with_stolen_state(arc, stolen, tmp_path / "forged", FORGED_FIRST_SEAL)
    lines = fake.lines(0)
    assert len(lines) == 1 + LINES_PER_SEAL and b"nothing happened" in lines[3]
    # Checkpoint 1 is signed with the epoch-10 seed, not the one checkpoint 0 names.
    expect_detected(fake, "bad_signature", file=cp_ref(1), epoch=1)

    # The forger drops the checkpoints after the genesis, re-sealing everything into
    # one epoch so the records' epoch numbers fit: the forgery is then an unsealed
    # tail. The MACs (epoch-10 key) give it away in key mode.
    # In public-key mode an unsigned tail is only hash-linked -- anyone can
    # compute that, stolen state or not -- so only --require-sealed fails.
    shutil.rmtree(fake.work)
    fake = reseal_with_stolen_state(
        arc, stolen, tmp_path / "forged", FORGED_FIRST_SEAL, epoch_records=None
    )
    for p in fake.checkpoint_paths()[1:]:
        p.unlink()
    expect_detected(fake, "mac_mismatch", modes=("key",), file=seg_ref(0), line=1, seq=0)
    rep = fake.verify_ok("public-key")
    assert (rep["sealed_records"], rep["unsealed_records"]) == (0, 1 + LINES_PER_SEAL)
    expect_detected(fake, "unsealed_tail", modes=("public-key",), args=["--require-sealed"], seq=0)


def test_forward_security_splice_forged_segment_into_genuine_archive(
    arc: Archive, tmp_path: Path
) -> None:
    # The forged first segment, re-sealed with stolen keys, dropped in place of
    # the genuine one; the genuine checkpoints and later segments stay.
    stolen = tmp_path / "stolen-state"
    shutil.copytree(arc.state, stolen)
    fake = reseal_with_stolen_state(arc, stolen, tmp_path / "forged", FORGED_FIRST_SEAL)
    shutil.copy(fake.segment(0), arc.segment(0))
    expect_detected(arc, "mac_mismatch", modes=("key",), file=seg_ref(0), line=1, seq=0)
    # The forged header already differs (its time), so epoch 1 (seqs 0, 1) fails
    # its checkpoint after line 2.
    rep = arc.verify("public-key", "--json").report()
    assert {k: rep.get(k) for k in ("what", "file", "line", "epoch")} == {
        "what": "checkpoint_mismatch",
        "file": seg_ref(0),
        "line": 2,
        "epoch": 1,
    }, rep


def test_forward_security_control_state_from_before_first_seal_can_forge(
    tmp_path: Path,
) -> None:
    # Control experiment: the same forging procedure with the state copied right
    # after keygen (the epoch-1 keys) does produce an archive that verifies.
    # So the failures above are due to key evolution, not to a clumsy forgery.
    arc = keygen(tmp_path / "w")
    stolen = tmp_path / "stolen-state"
    shutil.copytree(arc.state, stolen)
    for k in range(SEALS):
        arc.seal(*(b"s%d line%d" % (k, i) for i in range(LINES_PER_SEAL)))
    fake = reseal_with_stolen_state(arc, stolen, tmp_path / "forged", FORGED_FIRST_SEAL)
    for mode in MODES:
        rep = fake.verify_ok(mode)
        assert rep["records"] == 1 + LINES_PER_SEAL


# =============================================================== zero false positives


def test_clean_standard_archive(arc: Archive) -> None:
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(arc.head())
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed", "--anchor", anchor)
        assert rep["mode"] == ("key" if mode == "key" else "public-key")
        assert (rep["records"], rep["sealed_records"], rep["unsealed_records"]) == (
            RECORDS,
        ) * 2 + (0,)
        assert rep["anchor_epoch"] == EPOCHS - 1
        assert rep["warnings"] == [] and rep["recovered"] == []
        plain = arc.verify(mode)
        assert plain.code == 0 and b"intact" in plain.out and plain.err == ""


def test_clean_empty_archive_without_any_seal(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["records"], rep["segments"], rep["checkpoints"]) == (0, 0, 1)


def test_clean_seal_of_nothing(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    arc.seal()
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["records"], rep["segments"], rep["checkpoints"]) == (1, 1, 2)


def test_clean_one_record(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    arc.seal(b"only one", epoch_records=None)
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["records"], rep["checkpoints"]) == (2, 2)


def test_clean_empty_epochs(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    clock = ManualClock(time.time_ns())  # not before keygen, which used the real clock
    w = ArchiveWriter.open(Layout.at(arc.root), clock, EpochPolicy(interval_ns=60 * NS))
    w.append(Fields(clock.now_ns(), "app", b"before"))
    w.end_epoch("interval")
    empty = [w.end_epoch("interval") for _ in range(3)]  # nothing sealed in between
    clock.advance(3600)  # the interval passes idle; the next append closes that epoch
    w.append(Fields(clock.now_ns(), "app", b"after an hour"))
    assert w.maybe_end_epoch() is None
    w.close()
    assert [cp.records for cp in empty] == [0, 0, 0]
    # cp 0: the genesis; 1: header + "before"; 2-4: empty; 5: the idle hour, empty;
    # 6: "after an hour".
    assert [(cp.reason, cp.records) for cp in w.checkpoints_written] == [
        ("interval", 2),
        *[("interval", 0)] * 4,
        ("close", 1),
    ]
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert (rep["records"], rep["checkpoints"]) == (3, 7)

    arc.seal(b"x", b"y", epoch_records=None, args=["--epoch-interval", "1ms"])
    for mode in MODES:
        arc.verify_ok(mode, "--require-sealed")


def test_clean_many_segments(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    for k in range(25):
        arc.seal(*(b"seal %d line %d" % (k, i) for i in range(k % 4)), epoch_records=3)
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["segments"] == 25
        assert rep["records"] == 25 + sum(k % 4 for k in range(25))


def test_clean_after_torn_tail_recovery(arc: Archive) -> None:
    size = arc.segment(2).stat().st_size
    with arc.segment(2).open("ab") as fh:
        fh.write(b'{"seq":18,"epoch":9,"time":17956')  # half a line: a crash mid-write
    for mode in MODES:  # before recovery: a warning, not a failure
        rep = arc.verify_ok(mode)
        assert rep["records"] == RECORDS
        assert len(rep["warnings"]) == 1 and "torn" in rep["warnings"][0], rep
    arc.seal(b"after the crash")
    assert arc.segment(2).stat().st_size == size  # cut back, kept in quarantine/
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["warnings"] == []
        assert rep["recovered"] == [
            {
                "seq": RECORDS + 1,  # after the new segment's header
                "segment": "seg-0000000002.jsonl",
                "offset": size,
                "bytes": 32,
                "kept_in": f"quarantine/seg-0000000002.jsonl.{size}.tail",
            }
        ]
        plain = arc.verify(mode)
        assert plain.code == 0 and b"recovered: 32 torn bytes" in plain.out


def test_cut_records_before_a_torn_tail_recovery(arc: Archive) -> None:
    # After a torn-tail recovery, cutting sealed records off the end of the
    # recovered segment (as if they had been part of the torn tail) is caught by
    # the next segment's header, which names the last link before it.
    with arc.segment(2).open("ab") as fh:
        fh.write(b'{"seq":18,')
    arc.seal(b"after the crash")
    arc.write_lines(2, arc.lines(2)[:-1])
    expect_detected(arc, "broken_link", file=seg_ref(3), line=1, seq=17, field="attrs.prev_link")


def test_clean_unsealed_tail_after_crash(arc: Archive) -> None:
    crash_with_unsealed_tail(arc, [b"a", b"b"])
    for mode in MODES:
        rep = arc.verify_ok(mode)
        assert rep["unsealed_records"] == 3
    arc.seal(b"next run")  # the next writer adopts the tail and checkpoints it
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["unsealed_records"] == 0


TORN_HEADER = b'{"seq":18,"epoch":10,"time":1795668695230344015,"ts":"2026-11-26T04:5'
LAST_SEGMENT_CRASH = {"empty": b"", "torn_header": TORN_HEADER}


@pytest.mark.parametrize("kind", sorted(LAST_SEGMENT_CRASH))
def test_clean_crash_before_first_line_of_last_segment(arc: Archive, kind: str) -> None:
    # A crash between creating a segment file and its header reaching the disk
    # (wholly or torn): nothing in it was sealed; a warning, not a failure.
    arc.segment(3).write_bytes(LAST_SEGMENT_CRASH[kind])
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["records"] == RECORDS
        assert len(rep["warnings"]) == 1 and "seg-0000000003.jsonl" in rep["warnings"][0], rep


@pytest.mark.parametrize("kind", sorted(LAST_SEGMENT_CRASH))
def test_wipe_last_segment_to_look_like_a_crash(arc: Archive, kind: str) -> None:
    # The tolerance for a crashed last segment hides nothing that was sealed:
    # the checkpoints of its epochs still demand its records.
    arc.segment(2).write_bytes(LAST_SEGMENT_CRASH[kind])
    expect_detected(arc, "truncated", file=cp_ref(7), epoch=7, seq=12)


def test_empty_middle_segment_is_not_tolerated(arc: Archive) -> None:
    # Only the *last* segment may be empty: emptying one in the middle loses records.
    arc.segment(1).write_bytes(b"")
    expect_detected(arc, "segment_header", file=seg_ref(1), line=None, seq=None)


def test_empty_last_segment_is_recovered_by_next_seal(arc: Archive) -> None:
    arc.segment(3).touch()
    arc.seal(b"next run")
    assert len(arc.segment_paths()) == SEALS + 1  # the empty one is gone, a new one came
    assert all(p.stat().st_size > 0 for p in arc.segment_paths())
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["recovered"] == [] and rep["warnings"] == []


def test_clean_after_torn_header_recovery(arc: Archive) -> None:
    # The writer quarantines the torn header, removes the now empty segment and
    # names the removal in its recovery record (cut at offset 0).
    arc.segment(3).write_bytes(TORN_HEADER)
    arc.seal(b"after the crash")
    assert (arc.root / "quarantine" / "seg-0000000003.jsonl.0.tail").read_bytes() == TORN_HEADER
    assert all(p.stat().st_size > 0 for p in arc.segment_paths())
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["warnings"] == []
        assert [(r["segment"], r["offset"]) for r in rep["recovered"]] == [
            ("seg-0000000003.jsonl", 0)
        ]


def test_clean_odd_bytes(tmp_path: Path) -> None:
    arc = keygen(tmp_path / "w")
    odd = [b"\xff\xfe not utf-8 \xc3\x28", b"nul\x00byte\x00", b"x" * (1 << 20), b"", b"\t\r"]
    arc.seal(*odd, epoch_records=2)
    for mode in MODES:
        rep = arc.verify_ok(mode, "--require-sealed")
        assert rep["records"] == 1 + len(odd)
    records = [orjson.loads(x) for x in arc.lines(0)[1:]]
    assert base64.b64decode(records[0]["raw_b64"]) == odd[0]
    assert records[1]["message"] == "nul\x00byte\x00" and "raw_b64" not in records[1]
    assert len(records[2]["message"]) == 1 << 20


def test_clean_anchor_still_matches_after_growth(arc: Archive) -> None:
    anchor = arc.work / "anchor.json"
    anchor.write_bytes(arc.head())
    arc.seal(b"more")
    for mode in MODES:
        rep = arc.verify_ok(mode, "--anchor", anchor)
        assert rep["anchor_epoch"] == EPOCHS - 1 and rep["checkpoints"] > EPOCHS


# =============================================================== bad input


def test_missing_key_file(arc: Archive) -> None:
    missing = arc.work / "keys" / "nope.key"
    for flag in ("--key", "--public-key"):
        r = run_cli("verify", arc.root, flag, missing)
        one_line_error(r, 2, str(missing), "not found")
        r = run_cli("verify", arc.root, flag, missing, "--json")
        assert r.code == 2 and "Traceback" not in r.err


def test_wrong_key_from_another_archive(arc: Archive, other: Archive) -> None:
    for mode in MODES:
        r = run_cli("verify", arc.root, *other.key_args(mode), "--json")
        assert r.code == 1, str(r)
        rep = r.report()
        assert (rep["what"], rep["file"], rep["field"]) == (
            "identity",
            "archive.json",
            "public_key",
        )
        one_line_error(
            run_cli("verify", arc.root, *other.key_args(mode)), 1, "archive.json", "public key"
        )


def test_verify_key_with_loose_permissions(arc: Archive) -> None:
    arc.verify_key.chmod(0o644)
    r = run_cli("verify", arc.root, "--key", arc.verify_key)
    one_line_error(r, 2, str(arc.verify_key), "chmod 600")


def test_not_an_archive(tmp_path: Path, arc: Archive) -> None:
    plain = tmp_path / "just-a-dir"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello\n")
    for mode in MODES:
        one_line_error(
            run_cli("verify", plain, *arc.key_args(mode)), 2, str(plain), "not an auditd-py archive"
        )
        one_line_error(
            run_cli("verify", tmp_path / "missing", *arc.key_args(mode)), 2, "not an auditd-py"
        )


GARBAGE_LINES = {
    "json": b'{"seq": 3, "oops"',
    "binary": b"\x00\xff\xfe\x80garbage\x1b[31m",
    "sealed_suffix_bad_json": b'{"seq":3,"epoch":1,,,'
    + b',"link":"'
    + b"0" * 64
    + b'","mac":"'
    + b"0" * 64
    + b'"}',
}


@pytest.mark.parametrize("kind", sorted(GARBAGE_LINES))
def test_garbage_line_in_segment(arc: Archive, kind: str) -> None:
    arc.edit_line(0, 4, lambda b: GARBAGE_LINES[kind])
    for mode in MODES:
        r = arc.verify(mode)
        assert r.code in (1, 2)
        one_line_error(r, r.code, seg_ref(0), "line 4")
        rep = arc.verify(mode, "--json").report()
        assert (rep["ok"], rep["file"], rep["line"], rep["seq"]) == (False, seg_ref(0), 4, 3)


@pytest.mark.parametrize("line_no", [1, 2])
def test_garbage_json_in_header_line(arc: Archive, line_no: int) -> None:
    # A line that has a well-formed seal suffix but a body that is not JSON.
    def edit(line: bytes) -> bytes:
        body, link, mac = split_line(line)
        return seal_line(body[:30] + b"\x00{{{", link, mac)[:-1]

    arc.edit_line(1, line_no, edit)
    for mode in MODES:
        r = arc.verify(mode)
        one_line_error(r, 1, seg_ref(1), f"line {line_no}")


GARBAGE_FILES: dict[str, bytes] = {
    "archive.json": b"{not json",
    "checkpoints/cp-0000000003.json": b"\xff\x00 garbage\n",
}


@pytest.mark.parametrize("rel", sorted(GARBAGE_FILES))
def test_garbage_file_in_archive(arc: Archive, rel: str) -> None:
    (arc.root / rel).write_bytes(GARBAGE_FILES[rel])
    for mode in MODES:
        r = arc.verify(mode)
        assert r.code in (1, 2)
        one_line_error(r, r.code, rel)


def test_garbage_key_and_anchor_files(arc: Archive) -> None:
    junk = arc.work / "junk"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    junk.chmod(0o600)
    one_line_error(run_cli("verify", arc.root, "--key", junk), 2, str(junk))
    one_line_error(run_cli("verify", arc.root, "--public-key", junk), 2, str(junk))
    # A public key where the secret one is expected, and a directory as a key.
    one_line_error(run_cli("verify", arc.root, "--key", arc.public_key), 2, str(arc.public_key))
    one_line_error(run_cli("verify", arc.root, "--key", arc.work), 2, str(arc.work))
    one_line_error(run_cli("verify", arc.root, "--public-key", arc.work), 2, str(arc.work))
    for mode in MODES:
        r = arc.verify(mode, "--anchor", junk)
        assert r.code in (1, 2)
        one_line_error(r, r.code, "anchor")
        one_line_error(arc.verify(mode, "--anchor", arc.work / "nope"), 2, "anchor")


def test_both_or_neither_key(arc: Archive) -> None:
    r = run_cli("verify", arc.root)
    one_line_error(r, 2, "--key")
    r = run_cli("verify", arc.root, "--key", arc.verify_key, "--public-key", arc.public_key)
    one_line_error(r, 2, "--key")


# =============================================================== the real tool


@pytest.mark.integration
def test_real_cli_clean_and_attacked(arc: Archive) -> None:
    for mode in MODES:
        r = run_real("verify", arc.root, *arc.key_args(mode), "--json")
        assert r.code == 0 and orjson.loads(r.out)["ok"] is True, str(r)
    arc.edit_line(1, 3, lambda b: b.replace(b"s1 line1", b"s1 LINE1"))
    for mode in MODES:
        r = run_real("verify", arc.root, *arc.key_args(mode), "--json")
        assert r.code == 1, str(r)
        rep = orjson.loads(r.out)
        assert (rep["what"], rep["file"], rep["line"], rep["seq"]) == (
            "broken_link",
            seg_ref(1),
            3,
            8,
        )
        r = run_real("verify", arc.root, *arc.key_args(mode))
        one_line_error(r, 1, seg_ref(1), "line 3", "seq 8")


@pytest.mark.integration
def test_real_cli_bad_input_never_tracebacks(arc: Archive, tmp_path: Path) -> None:
    one_line_error(run_real("verify", tmp_path, "--key", arc.verify_key), 2, "not an auditd-py")
    one_line_error(
        run_real("verify", arc.root, "--key", tmp_path / "missing.key"), 2, "missing.key"
    )
    arc.edit_line(0, 4, lambda b: GARBAGE_LINES["binary"])
    one_line_error(
        run_real("verify", arc.root, "--public-key", arc.public_key), 1, seg_ref(0), "line 4"
    )
    arc.verify_key.chmod(0o644)
    one_line_error(run_real("verify", arc.root, "--key", arc.verify_key), 2, "chmod 600")


@pytest.mark.integration
def test_real_cli_forward_security(arc: Archive, tmp_path: Path) -> None:
    stolen = tmp_path / "stolen-state"
    shutil.copytree(arc.state, stolen)
    fake = reseal_with_stolen_state(arc, stolen, tmp_path / "forged", FORGED_FIRST_SEAL)
    for mode in MODES:
        r = run_real("verify", fake.root, *fake.key_args(mode), "--json")
        assert r.code == 1, str(r)
        rep = orjson.loads(r.out)
        assert (rep["what"], rep["file"], rep["epoch"]) == ("bad_signature", cp_ref(1), 1)
