"""The writer's part of retention: deleting the oldest segment, with a sealed record.

A base class of :class:`~auditd_py.store.writer.ArchiveWriter`; which segment
may go, and when, is :mod:`auditd_py.store.retention`'s decision.
"""

from __future__ import annotations

import os
from pathlib import Path

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.deletions import history_digest, history_step, split_log
from auditd_py.chain.encoding import META_SOURCE, Fields, parse_record
from auditd_py.chain.seal import Sealer
from auditd_py.clock import Clock
from auditd_py.errors import ArchiveError
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import Layout, fsync_dir, write_all
from auditd_py.store.rotation import FULL_ERRNOS, disk_full
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
    _pending: bytearray
    _history: tuple[int, bytes] | None
    _deletions_pending: list[bytes]
    disk_full: bool

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

    def retire_segment(
        self, name: str, *, policy: str, detail: str, undelivered: bool = False
    ) -> dict[str, object]:
        """Delete the oldest segment under a retention policy (docs/FORMAT.md 16).

        First a ``retention.deleted`` record is sealed and made durable, naming the
        segment, its seq range, the chain state at the cut (which the next
        segment's header states too), the checkpoint that covered it, the policy
        and the deletion history before it; its line goes to ``deletions.jsonl``;
        then the file is unlinked. A crash in between leaves the record and the
        segment: the next :meth:`open` completes the deletion. Returns the sealed
        attrs (what the meta-log tells as well).
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
        count, digest = self._deletion_history()
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
            "undelivered": undelivered,
            "history": {"count": count, "digest": digest.hex()},
        }
        self._seal_deletion(
            attrs,
            f"retention deleted segment {name} (seq {head.seq}..{nxt.seq - 1}, "
            f"sealed by checkpoint {cp.epoch}): {policy}: {detail}",
        )
        self.flush(sync=True)  # the record, then its line in deletions.jsonl
        self._unlink_segment(name)
        return attrs

    def _seal_deletion(self, attrs: dict[str, object], message: str) -> bytes:
        """Seal a ``retention.deleted`` record; its line joins the history (16.4).

        The line goes to ``deletions.jsonl`` at the next successful :meth:`flush`,
        once the record is durable.
        """
        count, digest = self._deletion_history()
        before = len(self._pending)
        self._seal(
            Fields(
                time_ns=self.clock.now_ns(),
                source=META_SOURCE,
                message=message.encode(),
                event="retention.deleted",
                attrs=attrs,
            )
        )
        line = bytes(self._pending[before:-1])
        self._history = (count + 1, history_step(digest, line))
        self._deletions_pending.append(line)
        return line

    def _deletion_history(self) -> tuple[int, bytes]:
        """(records sealed so far, their digest): ``deletions.jsonl`` plus pending lines."""
        if self._history is None:
            lines = [*self._read_deletions(), *self._deletions_pending]
            self._history = (len(lines), history_digest(lines))
        return self._history

    def _read_deletions(self) -> list[bytes]:
        """The lines of ``deletions.jsonl``; a torn last line (a crash) is cut off."""
        data = self.layout.read_deletions()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.layout.deletions, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            data = data[:keep]
        return split_log(data)

    def _sync_deletions(self) -> None:
        """Append the pending deletion lines to ``deletions.jsonl`` and fsync it."""
        path = self.layout.deletions
        new = not path.exists()
        data = b"".join(line + b"\n" for line in self._deletions_pending)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                fsync_dir(self.layout.root)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                self.disk_full = True
                raise disk_full(exc, path) from exc
            raise
        self._deletions_pending.clear()

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

    def _complete_deletions(self, rolled: list[tuple[str, bytes]]) -> None:
        """Finish deletions whose record was sealed before a crash (see retire_segment).

        Their lines join ``deletions.jsonl`` first if a crash kept them out of it.
        """
        logged = self._read_deletions()
        for _, line in rolled:
            count = parse_record(line).get("attrs", {}).get("history", {}).get("count")
            if not (type(count) is int and count < len(logged)):
                self._deletions_pending.append(line)
        self._history = None
        if self._deletions_pending:
            self._sync_deletions()
        present = self.layout.segment_names()
        for name, _ in rolled:
            if name in present and name != present[-1]:
                self._unlink_segment(name)
