"""The one verification driver: any ArchiveSource, under a VerifyPolicy."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditd_py.errors import Failure, IntegrityError
from auditd_py.store.reader import LocalArchive
from auditd_py.store.verification import ArchiveSource, VerifyPolicy, verify
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
    assert full.pending == () and full.report.checkpoints == 2
    src: ArchiveSource = FirstSegments(arc, 1, complete=True)
    with pytest.raises(IntegrityError) as exc:
        verify(src, policy)
    what = exc.value.where["what"]
    assert what is Failure.TRUNCATED and f"{what}" == str(what) == "truncated"


def test_an_incomplete_source_reports_pending_checkpoints(tmp_path: Path) -> None:
    arc = two_writers(tmp_path)
    res = verify(FirstSegments(arc, 1, complete=False), VerifyPolicy(arc.pk.public_key))
    assert res.report.mode == "public-key" and res.report.segments == 1
    assert res.report.checkpoints == 2 and len(res.pending) == 1
    assert res.pending_records == res.pending[0].seq_end - res.pending[0].seq_first == 3
    assert res.pending_since == res.pending[0].end and res.last_checkpoint == res.pending[0].end
    # every record present is covered by a checkpoint the source holds: sealed (F2)
    sealed = VerifyPolicy(arc.pk.public_key, arc.vk.mac_key, require_sealed=True)
    res = verify(FirstSegments(arc, 1, complete=False), sealed)
    assert res.report.unsealed_records == 0 and res.report.mode == "key"
