"""The deletion history: every segment retention ever deleted (docs/FORMAT.md 16.3, 16.4).

A ``retention.deleted`` record is sealed into the open segment, which retention
deletes in its turn later; so each record also carries ``history``, the number
of deletion records sealed before it and a hash chain over their lines, and the
archive keeps every such line in ``deletions.jsonl``, which retention never
touches. A verifier recomputes the chain over that file and compares it with
the sealed records still present: an entry removed, changed or reordered in the
file fails, and ``verify`` lists every deletion since keygen.

Pure: bytes and checkpoints in, a list of deletions out (R8, F4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any, Final

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.encoding import META_SOURCE, h, parse_record
from auditd_py.chain.format import SEGMENT_NAME
from auditd_py.chain.keys import same
from auditd_py.errors import Failure, FormatError, IntegrityError

TAG_DELETIONS: Final = b"\x0d"
DELETIONS_FILE: Final = "deletions.jsonl"
FIELDS: Final = (
    "segment",
    "file",
    "bytes",
    "seq_first",
    "seq_end",
    "last_link",
    "last_mac",
    "merkle_range",
    "checkpoint",
    "policy",
    "reason",
    "undelivered",
    "history",
)
"""The attrs of a ``retention.deleted`` record, in the order the writer seals them."""
POLICIES: Final = frozenset(
    {"max_age", "max_total_bytes", "max_segments", "min_free_bytes", "disk_pressure"}
)
_HEX32 = re.compile(r"[0-9a-f]{64}")
_SEAL = re.compile(rb',"link":"[0-9a-f]{64}","mac":"[0-9a-f]{64}"\}')

Bad = Callable[[str, str], IntegrityError]


def history_step(digest: bytes, line: bytes) -> bytes:
    """``D(k+1) = H(0x0d, D(k) ‖ line_k)``: the chain over deletion record lines."""
    return h(TAG_DELETIONS, digest, line)


def history_digest(lines: Sequence[bytes]) -> bytes:
    """``D(len(lines))``, from ``D(0)`` = 32 zero bytes."""
    d = ZERO
    for line in lines:
        d = history_step(d, line)
    return d


def split_log(data: bytes) -> list[bytes]:
    """The lines of ``deletions.jsonl`` (empty, or lines each ending in 0x0A)."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise FormatError(
            "deletions.jsonl does not end with a newline", file=DELETIONS_FILE, field="line"
        )
    return data[:-1].split(b"\n")


def _is_hex(v: object) -> bool:
    return isinstance(v, str) and _HEX32.fullmatch(v) is not None


def check_fields(attrs: dict[str, Any], seq: int, bad: Bad) -> None:
    """R8.1: every field present, no other, each well formed (16.3)."""
    if set(attrs) != set(FIELDS):
        missing = sorted(set(FIELDS) - set(attrs))
        extra = sorted(set(attrs) - set(FIELDS))
        raise bad(f"fields differ from 16.3 (missing {missing}, extra {extra})", "attrs")
    name, first, end = attrs["segment"], attrs["seq_first"], attrs["seq_end"]
    if not (isinstance(name, str) and SEGMENT_NAME.fullmatch(name)):
        raise bad("not a segment name", "attrs.segment")
    if attrs["file"] not in (name, f"{name}.zst", f"{name}.gz"):
        raise bad(f"file {attrs['file']!r} is not a file of the segment", "attrs.file")
    if not (type(attrs["bytes"]) is int and attrs["bytes"] >= 0):
        raise bad("bytes is not a non-negative integer", "attrs.bytes")
    if not (type(first) is int and type(end) is int and 0 <= first < end <= seq):
        raise bad(f"seq range [{first}, {end}) is not a range of earlier records", "attrs.seq_end")
    if not _is_hex(attrs["last_link"]):
        raise bad("last_link is not 64 lower-case hex digits", "attrs.last_link")
    if not _is_hex(attrs["last_mac"]):
        raise bad("last_mac is not 64 lower-case hex digits", "attrs.last_mac")
    rng = attrs["merkle_range"]
    if not (isinstance(rng, list) and len(rng) == end.bit_count() and all(map(_is_hex, rng))):
        raise bad(f"merkle_range is not the compact range of {end} leaves", "attrs.merkle_range")
    cp = attrs["checkpoint"]
    if not (isinstance(cp, dict) and set(cp) == {"epoch", "digest"}):
        raise bad("checkpoint is not {epoch, digest}", "attrs.checkpoint")
    if attrs["policy"] not in POLICIES:
        raise bad(f"policy {attrs['policy']!r} is not one of 16.3", "attrs.policy")
    if not isinstance(attrs["reason"], str):
        raise bad("reason is not a string", "attrs.reason")
    if type(attrs["undelivered"]) is not bool:
        raise bad("undelivered is not true or false", "attrs.undelivered")
    hist = attrs["history"]
    if not (
        isinstance(hist, dict)
        and set(hist) == {"count", "digest"}
        and type(hist["count"]) is int
        and hist["count"] >= 0
        and _is_hex(hist["digest"])
    ):
        raise bad("history is not {count, digest}", "attrs.history")


def check_checkpoint(
    attrs: dict[str, Any], closed: int, cps: Sequence[Checkpoint], bad: Bad
) -> None:
    """R8.2: the checkpoint that covered the deleted records, closed before the record.

    ``closed`` is the number of checkpoints closed before the record (its epoch).
    Where that checkpoint ends exactly at ``seq_end`` it also pins the stated chain state.
    """
    end, cp = attrs["seq_end"], attrs["checkpoint"]
    e = cp["epoch"]
    if not (
        type(e) is int
        and 0 <= e < closed
        and cps[e].seq_end >= end
        and (e == 0 or cps[e - 1].seq_end < end)
        and isinstance(cp["digest"], str)
        and compare_digest(cp["digest"], cps[e].digest.hex())
    ):
        raise bad(
            "does not name the checkpoint that sealed the deleted records before the "
            "deletion (epoch and digest)",
            "attrs.checkpoint",
        )
    c = cps[e]
    if c.seq_end == end and not (
        same(c.chain_head, bytes.fromhex(attrs["last_link"]))
        and same(c.mac_head, bytes.fromhex(attrs["last_mac"]))
        and same(c.merkle_root, merkle.root([bytes.fromhex(n) for n in attrs["merkle_range"]]))
    ):
        raise bad(
            f"states another chain state than checkpoint {e}, which ends at its seq_end",
            "attrs.last_link",
        )


@dataclass(frozen=True, slots=True)
class Deletion:
    """One deletion, from a sealed record still in the archive or from the history."""

    n: int
    """Its place in the history: the number of deletion records sealed before it."""
    seq: int
    time: int
    attrs: dict[str, Any]
    in_archive: bool
    """The sealed record itself is still in a segment (else only in deletions.jsonl)."""

    def as_dict(self) -> dict[str, Any]:
        a = self.attrs
        return {
            "n": self.n,
            "seq": self.seq,
            "time": self.time,
            "segment": a["segment"],
            "file": a["file"],
            "bytes": a["bytes"],
            "seq_first": a["seq_first"],
            "seq_end": a["seq_end"],
            "policy": a["policy"],
            "reason": a["reason"],
            "undelivered": a["undelivered"],
            "in_archive": self.in_archive,
        }


class DeletionHistory:
    """R8.4, R8.5 and F4 over the sealed records met in order and ``deletions.jsonl``."""

    def __init__(self, log: bytes, cps: Sequence[Checkpoint]) -> None:
        self.lines = split_log(log)
        self.cps = cps
        self.digest = ZERO
        self.next: int | None = None
        """The ``history.count`` the next sealed record must carry (None before the first)."""
        self.deletions: list[Deletion] = []

    def record(self, line: bytes, obj: dict[str, Any], present: bool, bad: Bad) -> None:
        """A sealed record met in the segments (R8.1–R8.3 passed); ``present``: case (a)."""
        hist = obj["attrs"]["history"]
        count, digest = hist["count"], hist["digest"]
        if self.next is None:  # the first one met: the history before it is in the file
            if count > len(self.lines):
                raise bad(
                    f"follows {count} deletions, but deletions.jsonl holds {len(self.lines)}",
                    "attrs.history",
                )
            for i in range(count):
                self._entry(i)  # moves self.digest on to D(i + 1)
        elif count != self.next:
            raise bad(f"history count {count}, expected {self.next}", "attrs.history")
        if not compare_digest(digest, self.digest.hex()):
            raise bad(
                "history digest does not match deletions.jsonl and the records before it: "
                "an earlier deletion was removed or changed",
                "attrs.history",
            )
        if count < len(self.lines):
            if not same(self.lines[count], line):
                raise bad(f"differs from line {count + 1} of deletions.jsonl", "attrs.history")
        elif not present:
            raise bad(
                "is missing from deletions.jsonl although its segment is gone", "attrs.history"
            )
        self._add(Deletion(count, obj["seq"], obj["time"], obj["attrs"], True), bad)
        self.digest = history_step(self.digest, line)
        self.next = count + 1

    def _entry(self, i: int) -> None:
        """An entry of deletions.jsonl whose record is no longer in the archive."""
        line = self.lines[i]

        def bad(why: str, field: str) -> IntegrityError:
            return IntegrityError(
                f"deletion history entry {i}: {why}",
                what=Failure.RETENTION,
                file=DELETIONS_FILE,
                line=i + 1,
                field=field,
            )

        if not (line.startswith(b'{"seq":') and _SEAL.fullmatch(line, len(line) - 148)):
            raise bad("not a sealed record line", "seal")
        try:
            obj = parse_record(line)
        except FormatError as exc:
            raise bad(f"not JSON: {exc.message}", "json") from exc
        attrs = obj.get("attrs")
        seq, epoch = obj.get("seq"), obj.get("epoch")
        if not (
            obj.get("source") == META_SOURCE
            and obj.get("event") == "retention.deleted"
            and isinstance(attrs, dict)
            and type(seq) is int
            and type(epoch) is int
            and type(obj.get("time")) is int
        ):
            raise bad("not a retention.deleted record", "event")
        check_fields(attrs, seq, bad)
        check_checkpoint(attrs, min(epoch, len(self.cps)), self.cps, bad)
        if attrs["history"]["count"] != i:
            raise bad(f"history count {attrs['history']['count']}, expected {i}", "attrs.history")
        if not compare_digest(attrs["history"]["digest"], self.digest.hex()):
            raise bad("history digest does not match the entries before it", "attrs.history")
        self._add(Deletion(i, seq, obj["time"], attrs, False), bad)
        self.digest = history_step(self.digest, line)

    def _add(self, d: Deletion, bad: Bad) -> None:
        """R8.5: deletions run oldest first from seq 0, each where the one before ended."""
        a = d.attrs
        prev = self.deletions[-1].attrs if self.deletions else None
        if prev is None:
            ok = a["seq_first"] == 0
        else:
            key = ("segment", "seq_first", "seq_end", "last_link", "last_mac", "merkle_range")
            retry = all(a[k] == prev[k] for k in key)
            ok = retry or (a["seq_first"] == prev["seq_end"] and a["segment"] > prev["segment"])
        if not ok:
            raise bad(
                f"deletes seq {a['seq_first']}..{a['seq_end'] - 1} of {a['segment']}, which "
                "does not follow the deletion before it",
                "attrs.seq_first",
            )
        self.deletions.append(d)

    def states_cut(self, segment: str, stated: tuple[int, str, str, list[str]]) -> bool:
        """Only for a source read in part (the daemon's self-check): whether an entry of
        deletions.jsonl past the records met, checked as in R8.4 and chained to them, states
        this cut ``(seq_end, last_link, last_mac, merkle_range)`` of ``segment``. Its sealed
        record then lies in the segments not read (F3 is pending, not failed)."""
        for i in range(self.next or 0, len(self.lines)):
            self._entry(i)
            a = self.deletions[-1].attrs
            got = (a["seq_end"], a["last_link"], a["last_mac"], a["merkle_range"])
            if a["segment"] == segment and got == stated:
                return True
        return False

    def finish(self) -> None:
        """F4: every entry of deletions.jsonl is a deletion record sealed in this archive."""
        sealed = self.next or 0
        if len(self.lines) > sealed:
            raise IntegrityError(
                f"deletions.jsonl holds {len(self.lines)} entries, but only {sealed} "
                "deletion records were sealed: entries were added",
                what=Failure.RETENTION,
                file=DELETIONS_FILE,
                line=sealed + 1,
            )
