"""Checks G1–G2 and C1–C8 of docs/FORMAT.md: the checkpoints form one chain from the
genesis checkpoint, which signs the identity file; and the anchor.

Run over every checkpoint before any record is read (by the
:class:`~auditd_py.chain.verify.Verifier`); pure, like the rest of the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditd_py.chain.checkpoint import GENESIS, ZERO, Checkpoint
from auditd_py.chain.encoding import genesis_link
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import same
from auditd_py.errors import Failure, FormatError, IntegrityError

GENESIS_FILE = "checkpoints/cp-0000000000.json"


Failures = list[IntegrityError | FormatError]
"""Where ``verify --all`` collects failures instead of stopping at the first."""


def check_checkpoints(
    identity: Identity,
    items: Sequence[tuple[str, bytes]],
    public_key: bytes,
    failures: Failures | None = None,
) -> list[Checkpoint]:
    """G1, C1–C8: the checkpoints, in order, form one signed chain from ``public_key``,
    starting with the genesis checkpoint.

    With ``failures`` (``verify --all``), a checkpoint that fails is recorded there
    and the next one is checked against it as stored (so one edit is one failure,
    plus what it breaks in its successor); one that cannot be parsed (C1) is left
    out. Without any checkpoint nothing can be checked: that raises.
    """
    if not items:  # G1: keygen wrote checkpoint 0; without it the archive was wiped
        raise IntegrityError(
            "the archive has no genesis checkpoint (no checkpoint at all): its checkpoints "
            "were deleted, or it is not an archive keygen created",
            what=Failure.MISSING_GENESIS,
            file=GENESIS_FILE,
        )
    cps: list[Checkpoint] = []
    pk = public_key
    prev: Checkpoint | None = None
    for name, line in items:
        try:
            cp = Checkpoint.from_line(line, file=name)  # C1: well-formed, canonical
        except FormatError as exc:
            if failures is None:
                raise
            failures.append(exc)
            continue
        try:
            _check_genesis(name, cp, len(cps))  # G1
            _check_next(identity, name, cp, prev.epoch + 1 if prev else 0, prev, pk)
        except (IntegrityError, FormatError) as exc:
            if failures is None:
                raise
            failures.append(exc)
        cps.append(cp)
        pk = cp.next_public_key
        prev = cp
    if not cps:  # every one failed C1 (--all): nothing to check the records against
        raise IntegrityError(
            "no checkpoint can be read, the genesis checkpoint included",
            what=Failure.MISSING_GENESIS,
            file=GENESIS_FILE,
        )
    return cps


def _check_genesis(name: str, cp: Checkpoint, e: int) -> None:
    """G1: the first checkpoint is the genesis checkpoint (epoch 0, reason ``genesis``,
    no records), and no other checkpoint claims to be one."""
    if e == 0 and (cp.epoch != 0 or cp.reason != GENESIS or cp.seq_end != 0):
        raise IntegrityError(
            "the first checkpoint is not the genesis checkpoint (epoch 0 over the empty "
            f"tree, reason {GENESIS!r}): checkpoint 0 was deleted or replaced",
            what=Failure.MISSING_GENESIS,
            file=name,
            epoch=cp.epoch,
        )
    if e > 0 and cp.reason == GENESIS:
        raise FormatError(
            f"checkpoint {e} has reason {GENESIS!r}: only checkpoint 0 is the genesis",
            file=name,
            field="reason",
        )


def check_identity_signed(identity_bytes: bytes, genesis: Checkpoint, file: str) -> None:
    """G2: the genesis checkpoint's chain head is the genesis link of these exact bytes,
    so a signature that only the erased epoch-0 key could make covers ``archive.json``
    byte for byte, also once retention deleted record 0."""
    if not same(genesis.chain_head, genesis_link(identity_bytes)):
        raise IntegrityError(
            "archive.json is not the identity the genesis checkpoint signed "
            "(the file was edited or replaced)",
            what=Failure.IDENTITY,
            file=file,
        )


def _check_next(
    identity: Identity, name: str, cp: Checkpoint, e: int, prev: Checkpoint | None, pk: bytes
) -> None:
    """C2–C8 for checkpoint ``e`` after ``prev``, signed by ``pk``."""
    if cp.epoch != e:  # C2: epochs contiguous from 0
        raise IntegrityError(
            f"checkpoint for epoch {e} is missing (next present is epoch {cp.epoch})"
            if cp.epoch > e
            else f"checkpoint for epoch {cp.epoch} appears again or out of order",
            what=Failure.MISSING_CHECKPOINT if cp.epoch > e else Failure.CHECKPOINT_ORDER,
            file=name,
            epoch=e,
        )
    if cp.archive != identity.archive:  # C3: same archive
        raise IntegrityError(
            f"checkpoint belongs to archive {cp.archive}", what=Failure.IDENTITY, file=name
        )
    if not same(cp.public_key, pk):  # C4: key chain from the public key
        raise IntegrityError(
            "checkpoint is signed with a key the previous checkpoint did not certify",
            what=Failure.BAD_SIGNATURE,
            file=name,
            epoch=e,
        )
    if not cp.signature_valid(pk):  # C5: signature
        raise IntegrityError(
            "bad signature on checkpoint", what=Failure.BAD_SIGNATURE, file=name, epoch=e
        )
    want_prev = prev.digest if prev is not None else ZERO
    if not same(cp.prev, want_prev):  # C6: checkpoints hash-linked
        raise IntegrityError(
            "checkpoint does not link to the previous checkpoint",
            what=Failure.CHECKPOINT_LINK,
            file=name,
            epoch=e,
        )
    want_first = prev.seq_end if prev is not None else 0
    if cp.seq_first != want_first or cp.seq_end < cp.seq_first:  # C7: seq ranges
        raise IntegrityError(
            f"checkpoint seq range [{cp.seq_first}, {cp.seq_end}) does not follow "
            f"the previous one (ends at {want_first})",
            what=Failure.CHECKPOINT_RANGE,
            file=name,
            epoch=e,
        )
    want_start = prev.end if prev is not None else identity.created
    if cp.start != want_start or cp.end < cp.start:  # C8: windows are contiguous
        raise IntegrityError(
            "checkpoint window does not start where the previous one ended "
            "(or at the archive's creation), or ends before it starts",
            what=Failure.CHECKPOINT_WINDOW,
            file=name,
            epoch=e,
        )


def check_anchor(
    identity: Identity, cps: Sequence[Checkpoint], names: Sequence[str], anchor: bytes
) -> int:
    """The anchor checkpoint is in the archive, byte for byte; returns its epoch."""
    a = Checkpoint.from_line(anchor, file="anchor")
    if a.archive != identity.archive:
        raise IntegrityError(
            f"anchor is for archive {a.archive}, not {identity.archive}",
            what=Failure.ANCHOR_MISMATCH,
            file="anchor",
        )
    if a.epoch >= len(cps):
        raise IntegrityError(
            f"archive truncated: the anchor is checkpoint {a.epoch} (seq < {a.seq_end}), "
            f"but the archive's checkpoints end at epoch {len(cps) - 1}",
            what=Failure.TRUNCATED,
            file="anchor",
            epoch=a.epoch,
        )
    if not same(a.line, cps[a.epoch].line):
        raise IntegrityError(
            f"checkpoint {a.epoch} in the archive differs from the anchor",
            what=Failure.ANCHOR_MISMATCH,
            file=names[a.epoch],
            epoch=a.epoch,
        )
    return a.epoch
