"""The writer's part of retention: deleting the oldest segment, with a sealed record.

A base class of :class:`~auditd_py.store.writer.ArchiveWriter`; which segment
may go, and when, is :mod:`auditd_py.store.retention`'s decision.
"""

from __future__ import annotations

from pathlib import Path

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import META_SOURCE, Fields
from auditd_py.chain.seal import Sealer
from auditd_py.clock import Clock
from auditd_py.errors import ArchiveError
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import Layout, fsync_dir
from auditd_py.store.segment import read_header
from auditd_py.store.state import WriterState


class WriterRetirement:
    """Segment deletion; the attributes are the writer's (set by its constructor)."""

    layout: Layout
    sealer: Sealer
    clock: Clock
    worm: Worm
    segment: str | None
    _saved: WriterState

    def _save_state(self) -> None:
        raise NotImplementedError  # the writer's

    def _seal(self, f: Fields) -> int:
        raise NotImplementedError  # the writer's

    def flush(self, *, sync: bool = True) -> None:
        raise NotImplementedError  # the writer's

    def covering_checkpoint(self, seq_end: int) -> Checkpoint:
        """The first checkpoint whose range ends at or after ``seq_end`` (written already)."""
        lo, hi = 0, self.sealer.epoch  # epochs [0, epoch) have checkpoint files
        found: Checkpoint | None = None
        while lo < hi:
            mid = (lo + hi) // 2
            path = self.layout.checkpoint(mid)
            cp = Checkpoint.from_line(path.read_bytes(), file=str(path))
            if cp.seq_end >= seq_end:
                found, hi = cp, mid
            else:
                lo = mid + 1
        if found is None:
            raise ArchiveError(f"no checkpoint covers the records before seq {seq_end} yet")
        return found

    def retire_segment(self, name: str, *, policy: str, detail: str) -> dict[str, object]:
        """Delete the oldest segment under a retention policy (docs/FORMAT.md 16).

        First a ``retention.deleted`` record is sealed and made durable, naming the
        segment, its seq range, the chain state at the cut (which the next
        segment's header states too), the checkpoint that covered it and the
        policy; then the file is unlinked. A crash in between leaves the record
        and the segment: the next :meth:`open` completes the deletion.
        """
        names = self.layout.segment_names()
        if len(names) < 2 or names[0] != name or name == self.segment:
            raise ArchiveError(
                f"only the oldest closed segment can be deleted, not {name}",
                file=str(self.layout.segments),
            )
        path = self.layout.segment_path(name)
        head = read_header(path, name)
        nxt = read_header(self.layout.segment_path(names[1]), names[1])
        if not nxt.resumable or nxt.prev_segment != name or nxt.merkle_range is None:
            raise ArchiveError(
                f"{names[1]} does not state the chain state at the cut; {name} is kept",
                file=str(self.layout.segment_path(names[1])),
            )
        cp = self.covering_checkpoint(nxt.seq)
        size = path.stat().st_size
        if self._saved.segment == name:
            # The state must not name a segment that is gone, and the record below
            # must lie where the next writer rolls forward (it completes the deletion).
            self.flush(sync=True)
            self._save_state()
        attrs: dict[str, object] = {
            "segment": name,
            "file": path.name,
            "bytes": size,
            "seq_first": head.seq,
            "seq_end": nxt.seq,
            "last_link": nxt.prev_link,
            "last_mac": nxt.prev_mac,
            "merkle_range": list(nxt.merkle_range),
            "checkpoint": {"epoch": cp.epoch, "digest": cp.digest.hex()},
            "policy": policy,
            "reason": detail,
        }
        self._seal(
            Fields(
                time_ns=self.clock.now_ns(),
                source=META_SOURCE,
                message=(
                    f"retention deleted segment {name} (seq {head.seq}..{nxt.seq - 1}, "
                    f"sealed by checkpoint {cp.epoch}): {policy}: {detail}"
                ).encode(),
                event="retention.deleted",
                attrs=attrs,
            )
        )
        self.flush(sync=True)
        self._unlink_segment(name)
        brief = ("segment", "file", "bytes", "seq_first", "seq_end", "policy", "reason")
        return {**{k: attrs[k] for k in brief}, "checkpoint": cp.epoch}

    def _unlink_segment(self, name: str) -> None:
        """Remove every file of a segment (plain, compressed, a compression's temp)."""
        seg_dir = self.layout.segments
        for fname in (name, f"{name}.zst", f"{name}.gz", f".{name}.zst.tmp", f".{name}.gz.tmp"):
            p = seg_dir / fname
            if p.exists():
                self._release_flags(p)
                p.unlink(missing_ok=True)
        fsync_dir(seg_dir)

    def _release_flags(self, path: Path) -> None:
        """Lift append-only/immutable flags before a deletion (even if set by an earlier run)."""
        self.worm.release(path)

    def _complete_deletions(self, names: list[str]) -> None:
        """Finish deletions whose record was sealed before a crash (see retire_segment)."""
        present = self.layout.segment_names()
        for name in names:
            if name in present and name != present[-1]:
                self._unlink_segment(name)
