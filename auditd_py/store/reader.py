"""Reading archives: the I/O around the pure verifier, record listing, proofs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from auditd_py.chain import merkle
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import leaf_hash, parse_record, split_line
from auditd_py.chain.verify import Report
from auditd_py.errors import ArchiveError, Failure, FormatError, IntegrityError, ProofError
from auditd_py.store.bounded import CORRUPT, BoundedLines, open_lines
from auditd_py.store.layout import SEGMENTS, Layout
from auditd_py.store.segment import read_header
from auditd_py.store.verification import Progress, VerifyPolicy, verify

_CHUNK = 1 << 20


def archive_bytes(layout: Layout) -> int:
    """Bytes on disk in segment files (compressed segments count compressed)."""
    return sum(p.stat().st_size for _, p in layout.segment_files())


def _open(path: Path) -> BoundedLines:
    """A segment's lines, bounded (``store.bounded``); compressed ones decompressed as a stream."""
    try:
        try:
            return open_lines(path, f"{SEGMENTS}/{path.name}")
        except FileNotFoundError:
            # compressed (or its interrupted copy removed) since it was listed
            alt = Layout.at(path.parent.parent).segment_path(
                path.name.split(".jsonl")[0] + ".jsonl"
            )
            if alt == path:
                raise
            return open_lines(alt, f"{SEGMENTS}/{alt.name}")
    except OSError as exc:
        raise ArchiveError(f"cannot read: {exc.strerror}", file=str(path)) from exc


@contextmanager
def _decompressing(path: Path) -> Iterator[None]:
    """A damaged compressed segment is a format failure naming the file, not a traceback."""
    try:
        yield
    except CORRUPT as exc:
        raise IntegrityError(
            f"compressed segment cannot be decompressed: {exc or type(exc).__name__}",
            what=Failure.FORMAT,
            file=f"{SEGMENTS}/{path.name}",
        ) from exc


class LocalArchive:
    """An archive directory as a verification source (also what ``collect`` writes)."""

    complete = True

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def read_identity(self) -> bytes:
        return self.layout.read_identity()

    def read_checkpoints(self) -> list[tuple[str, bytes]]:
        _require_dir(self.layout.checkpoints, Failure.MISSING_GENESIS)
        return self.layout.checkpoint_files()

    def read_deletions(self) -> bytes:
        return self.layout.read_deletions()

    def list_segments(self) -> list[tuple[str, str]]:
        _require_dir(self.layout.segments, Failure.TRUNCATED)
        return [(name, str(path)) for name, path in self.layout.segment_files()]

    @contextmanager
    def open_lines(self, ref: str) -> Iterator[IO[bytes]]:
        path = Path(ref)
        with _open(path) as fh, _decompressing(path):
            yield fh


def _require_dir(path: Path, what: Failure) -> None:
    """A directory keygen created is gone although archive.json is there: removed
    (docs/FORMAT.md 3), an integrity failure, not a usage error."""
    if not path.is_dir():
        raise IntegrityError(
            f"the archive's {path.name}/ directory is missing: it was removed",
            what=what,
            file=f"{path.name}/",
        )


def verify_archive(
    layout: Layout,
    *,
    public_key: bytes,
    mac_key: bytes | None = None,
    anchor: bytes | None = None,
    require_sealed: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Verify an archive directory, streaming every segment once (see :func:`verify`)."""
    policy = VerifyPolicy(public_key, mac_key, anchor, require_sealed)
    return verify(LocalArchive(layout), policy, progress).report


@dataclass(frozen=True, slots=True)
class Located:
    """A record line and where it is."""

    segment: str
    line_no: int
    line: bytes


def iter_lines(layout: Layout) -> Iterator[Located]:
    """Every complete record line, in sealing order (a torn last line is skipped)."""
    for name, path in layout.segment_files():
        with _open(path) as fh, _decompressing(path):
            for n, raw in enumerate(fh, 1):
                if raw[-1:] != b"\n":
                    break
                yield Located(name, n, raw[:-1])


def iter_records(layout: Layout) -> Iterator[tuple[Located, dict[str, Any]]]:
    for loc in iter_lines(layout):
        try:
            yield loc, parse_record(loc.line)
        except FormatError as exc:
            raise FormatError(
                exc.message, file=f"{SEGMENTS}/{loc.segment}", line=loc.line_no
            ) from exc


def latest_checkpoint(layout: Layout) -> tuple[str, bytes]:
    cps = layout.checkpoint_files()
    if not cps:
        raise ArchiveError("archive has no checkpoint yet", file=str(layout.checkpoints))
    return cps[-1]


def archive_start(layout: Layout) -> tuple[int, list[bytes]]:
    """The first seq present and the Merkle compact range before it (16.2).

    ``(0, [])`` unless retention deleted the first segments, in which case the
    first remaining segment's header states both.
    """
    files = layout.segment_files()
    if not files:
        return 0, []
    name, path = files[0]
    try:
        head = read_header(path, name)
    except ArchiveError:
        return 0, []  # an archive whose only segment has no header yet
    if head.prev_segment is None:
        return 0, []
    if head.merkle_range is None:
        raise IntegrityError(
            f"the archive starts at {name}, whose header does not state the Merkle "
            "compact range at the cut",
            what=Failure.MISSING_SEGMENT,
            file=f"{SEGMENTS}/{name}",
            line=1,
        )
    return head.seq, [bytes.fromhex(n) for n in head.merkle_range]


def build_proof(layout: Layout, seq: int) -> dict[str, Any]:
    """An inclusion proof of record ``seq`` against the latest checkpoint.

    The proof carries every checkpoint up to that one, so that it can be checked
    offline from the public key alone (the signing keys form a chain).
    """
    cps = layout.checkpoint_files()
    if not cps:
        raise ArchiveError("archive has no checkpoint yet", file=str(layout.checkpoints))
    last = Checkpoint.from_line(cps[-1][1], file=cps[-1][0])
    size = last.seq_end
    if not 0 <= seq < size:
        raise ArchiveError(
            f"seq {seq} is not covered by the latest checkpoint (it covers 0..{size - 1})"
        )
    start, start_stack = archive_start(layout)
    builder = merkle.PathBuilder(seq, size, start, start_stack)
    record_line: bytes | None = None
    n = start
    for loc in iter_lines(layout):
        if n >= size:
            break
        body, _, _ = split_line(loc.line)
        builder.feed(leaf_hash(body))
        if n == seq:
            record_line = loc.line
        n += 1
    if n < size or record_line is None:
        raise IntegrityError(
            f"the archive ends at seq {n - 1}, before the checkpoint's tree size {size}",
            what=Failure.TRUNCATED,
        )
    return {
        "v": 1,
        "type": "auditd-py.inclusion-proof",
        "archive": last.archive,
        "seq": seq,
        "tree_size": size,
        "record": record_line.decode("utf-8"),
        "path": [p.hex() for p in builder.path()],
        "checkpoints": [line.rstrip(b"\n").decode("utf-8") for _, line in cps],
    }


def check_proof(proof: dict[str, Any], public_key: bytes) -> dict[str, Any]:
    """Check an inclusion proof offline; raise ProofError or IntegrityError."""
    try:
        seq = int(proof["seq"])
        size = int(proof["tree_size"])
        record = str(proof["record"]).encode("utf-8")
        path = [bytes.fromhex(p) for p in proof["path"]]
        cp_lines = [str(c).encode("utf-8") for c in proof["checkpoints"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed proof: {exc}") from exc
    if proof.get("type") != "auditd-py.inclusion-proof" or type(proof.get("v")) is not int:
        raise ProofError("not an auditd-py inclusion proof")
    if proof["v"] != 1:
        raise ProofError(f"unsupported inclusion proof version {proof['v']!r}")
    pk = public_key
    cps: list[Checkpoint] = []
    for i, line in enumerate(cp_lines):
        cp = Checkpoint.from_line(line, file=f"proof checkpoint {i}")
        if cp.epoch != i or cp.public_key != pk or not cp.signature_valid(pk):
            raise ProofError(f"checkpoint {i} in the proof is not signed by the key chain")
        if cp.archive != proof.get("archive", cp.archive) or (i and cp.archive != cps[0].archive):
            raise ProofError(f"checkpoint {i} in the proof is for another archive")
        if i == 0 and (cp.prev != bytes(32) or cp.seq_first != 0):
            raise ProofError("checkpoint 0 in the proof does not start the chain")
        if i and (cp.prev != cps[-1].digest or cp.seq_first != cps[-1].seq_end):
            raise ProofError(f"checkpoint {i} in the proof does not follow checkpoint {i - 1}")
        cps.append(cp)
        pk = cp.next_public_key
    if not cps:
        raise ProofError("proof carries no checkpoint")
    last = cps[-1]
    if last.seq_end != size:
        raise ProofError("proof tree size differs from its checkpoint")
    body, _, _ = split_line(record)
    obj = parse_record(record)
    if obj.get("seq") != seq:
        raise ProofError(f"record in the proof has seq {obj.get('seq')}, proof says {seq}")
    merkle.verify_inclusion(seq, size, leaf_hash(body), path, last.merkle_root)
    return {"seq": seq, "epoch": last.epoch, "tree_size": size, "record": obj}
