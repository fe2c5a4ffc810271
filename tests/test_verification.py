"""The one verification driver: any ArchiveSource, under a VerifyPolicy."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditd_py.chain.format import NS
from auditd_py.errors import Failure, IntegrityError
from auditd_py.store.reader import LocalArchive
from auditd_py.store.verification import ArchiveSource, MaxAge, VerifyPolicy, check, verify
from tests.support.archive import Arc


class FirstSegments(LocalArchive):
    """A directory of which only the first segments have arrived."""

    def __init__(self, arc: Arc, segments: int, *, complete: bool) -> None:
        super().__init__(arc.layout)
        self.keep = segments
        self.complete = complete

    def list_segments(self) -> list[tuple[str, str]]:
        return super().list_segments()[: self.keep]


def two_writers(tmp_path: Path) -> Arc:
    """Two segments, each closed with a checkpoint."""
    arc = Arc(tmp_path)
    arc.seal([b"a", b"b"])
    arc.seal([b"c", b"d"])
    return arc


def test_a_complete_source_must_hold_every_checkpointed_record(tmp_path: Path) -> None:
    arc = two_writers(tmp_path)
    policy = VerifyPolicy(arc.pk.public_key, arc.vk.mac_key)
    full = verify(LocalArchive(arc.layout), policy)
    assert full.pending == () and full.report.checkpoints == 3  # genesis + 2
    src: ArchiveSource = FirstSegments(arc, 1, complete=True)
    with pytest.raises(IntegrityError) as exc:
        verify(src, policy)
    what = exc.value.where["what"]
    assert what is Failure.TRUNCATED and f"{what}" == str(what) == "truncated"


def test_an_incomplete_source_reports_pending_checkpoints(tmp_path: Path) -> None:
    arc = two_writers(tmp_path)
    res = verify(FirstSegments(arc, 1, complete=False), VerifyPolicy(arc.pk.public_key))
    assert res.report.mode == "public-key" and res.report.segments == 1
    assert res.report.checkpoints == 3 and len(res.pending) == 1
    assert res.pending_records == res.pending[0].seq_end - res.pending[0].seq_first == 3
    assert res.pending_since == res.pending[0].end and res.last_checkpoint == res.pending[0].end
    # every record present is covered by a checkpoint the source holds: sealed (F2)
    sealed = VerifyPolicy(arc.pk.public_key, arc.vk.mac_key, require_sealed=True)
    res = verify(FirstSegments(arc, 1, complete=False), sealed)
    assert res.report.unsealed_records == 0 and res.report.mode == "key"


def test_max_age_fails_a_rolled_back_archive_with_its_own_code(tmp_path: Path) -> None:
    """S1 (FORMAT.md 15.9): the newest checkpoint must be recent; no anchor needed."""
    arc = two_writers(tmp_path)
    last_end = verify(LocalArchive(arc.layout), VerifyPolicy(arc.pk.public_key)).last_checkpoint
    assert last_end is not None
    fresh = MaxAge(3600 * NS, last_end + 3600 * NS)  # exactly max_age old: still fresh
    for mac_key in (arc.vk.mac_key, None):
        ok = verify(
            LocalArchive(arc.layout), VerifyPolicy(arc.pk.public_key, mac_key, max_age=fresh)
        )
        assert ok.report.checkpoints == 3
    # Roll the archive back to its first writer: plain verify passes (a cut at an
    # epoch boundary), but its newest checkpoint is now an older one.
    (arc.layout.segments / "seg-0000000001.jsonl").unlink()
    last = sorted(arc.layout.checkpoints.iterdir())[-1]
    last.unlink()
    assert verify(LocalArchive(arc.layout), VerifyPolicy(arc.pk.public_key)).report.records == 3
    with pytest.raises(IntegrityError) as exc:
        verify(LocalArchive(arc.layout), VerifyPolicy(arc.pk.public_key, max_age=fresh))
    assert exc.value.where["what"] is Failure.STALE
    assert exc.value.where["file"] == "checkpoints/cp-0000000001.json"
    assert exc.value.where["epoch"] == 1


def test_max_age_is_one_rule_for_verify_and_fleet() -> None:
    rule = MaxAge(60 * NS, 1_000 * NS)
    assert rule.stale(940 * NS) is None
    assert rule.stale(939 * NS) == "last checkpoint 61s ago > 60s"
    assert rule.stale(None) == "no checkpoint yet"


def test_check_returns_every_failure_and_how_far_it_got(tmp_path: Path) -> None:
    """The Outcome the output formats render: failures with codes, and the extent."""
    arc = two_writers(tmp_path)
    policy = VerifyPolicy(arc.pk.public_key)
    ok = check(LocalArchive(arc.layout), policy)
    assert ok.ok and ok.verification is not None and ok.verified is not None
    assert (ok.verified.records, len(ok.verified.segments), ok.verified.epochs) == (6, 2, 3)
    for seg in arc.segment_paths():  # one edit in each segment's second record
        lines = seg.read_bytes().split(b"\n")
        lines[1] = lines[1].replace(b'"message":"', b'"message":"X', 1)
        seg.write_bytes(b"\n".join(lines))
    first = check(LocalArchive(arc.layout), policy)
    assert [f.where["what"] for f in first.failures] == [Failure.BROKEN_LINK]
    assert first.verified is not None and first.verified.records == 1  # the header only
    every = check(LocalArchive(arc.layout), policy, keep_going=True)
    assert [(f.where["what"], f.where["file"]) for f in every.failures] == [
        (Failure.BROKEN_LINK, "segments/seg-0000000000.jsonl"),
        (Failure.BROKEN_LINK, "segments/seg-0000000001.jsonl"),
    ]
    doc = every.as_dict()
    assert doc["ok"] is False and doc["what"] == "broken_link" and len(doc["failures"]) == 2
    assert doc["verified"]["segments"] == []  # each passed over after its failure
    with pytest.raises(IntegrityError) as exc:
        verify(LocalArchive(arc.layout), policy)
    assert exc.value is not first.failures[0] and exc.value.where == first.failures[0].where
