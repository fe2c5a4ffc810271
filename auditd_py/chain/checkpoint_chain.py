"""Checks C1–C8 of docs/FORMAT.md: the checkpoints form one chain, and the anchor.

Run over every checkpoint before any record is read (by the
:class:`~auditd_py.chain.verify.Verifier`); pure, like the rest of the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.identity import Identity
from auditd_py.chain.keys import same
from auditd_py.errors import Failure, IntegrityError


def check_checkpoints(
    identity: Identity, items: Sequence[tuple[str, bytes]], public_key: bytes
) -> list[Checkpoint]:
    """C1–C8: the checkpoints, in order, form one signed chain from ``public_key``."""
    cps: list[Checkpoint] = []
    pk = public_key
    prev: Checkpoint | None = None
    for name, line in items:
        cp = Checkpoint.from_line(line, file=name)  # C1: well-formed, canonical
        _check_next(identity, name, cp, len(cps), prev, pk)
        cps.append(cp)
        pk = cp.next_public_key
        prev = cp
    return cps


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
