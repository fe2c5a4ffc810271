"""One record's step along the chain, shared by the sealer and the verifier.

:func:`chain_step` is the hash step (leaf hash, then the link over the previous
link and MAC); :func:`check_record` is checks R1–R4 of docs/FORMAT.md for one
record line. The sealer (:meth:`Sealer.adopt`) and the verifier (its slow path)
call them; their hot per-record loops (``Sealer.seal_many``,
``Verifier.records``) inline the same steps for speed and say so where they do.
"""

from __future__ import annotations

from hmac import compare_digest
from typing import Any

from auditd_py.chain.encoding import _LEAF, _LINK, scan_int, split_line
from auditd_py.errors import Failure, IntegrityError


def chain_step(body: bytes, prev_link: bytes, prev_mac: bytes) -> tuple[bytes, bytes]:
    """(leaf hash, chain link) of a record body after ``prev_link`` and ``prev_mac``."""
    st = _LEAF.copy()
    st.update(body)
    leaf = st.digest()
    st = _LINK.copy()
    st.update(prev_link)
    st.update(prev_mac)
    st.update(leaf)
    return leaf, st.digest()


def check_record(
    line: bytes, seq: int, epoch: int, prev_link: bytes, prev_mac: bytes, mac: Any | None
) -> tuple[bytes, bytes, bytes, bytes]:
    """Checks R1–R4 for one record line; returns (body, link, mac, leaf hash).

    ``mac`` is the keyed BLAKE2b state of the epoch (``None``: public-key mode,
    no MAC check).
    """
    body, link, tag = split_line(line)  # R1: the seal suffix is present (fail closed)
    if not body.startswith(b'{"seq":%d,"epoch":%d,' % (seq, epoch)):  # R2: position
        raise position_error(body, seq, epoch)
    if mac is not None:  # R3: the MAC authenticates the stored link
        st = mac.copy()
        st.update(link)
        if not compare_digest(tag, st.digest()):
            raise IntegrityError(
                f"MAC mismatch: record is not authentic for epoch {epoch}",
                what=Failure.MAC_MISMATCH,
                seq=seq,
                epoch=epoch,
            )
    leaf, want = chain_step(body, prev_link, prev_mac)
    if not compare_digest(link, want):  # R4: hash chain
        raise IntegrityError(
            "record altered: its bytes do not hash to its chain link"
            + (
                " (the link itself is authentic)"
                if mac is not None
                else " (or the MAC of the record before it was altered)"
            ),
            what=Failure.BROKEN_LINK,
            seq=seq,
            epoch=epoch,
        )
    return body, link, tag, leaf


def position_error(body: bytes, seq: int, epoch: int) -> IntegrityError:
    got = scan_int(body, b"seq")
    got_epoch = scan_int(body, b"epoch")
    if got is None:
        return IntegrityError("record has no seq", what=Failure.FORMAT, seq=seq, field="seq")
    if got == seq:
        return IntegrityError(
            f"record claims epoch {got_epoch}, but the checkpoints place seq {seq} "
            f"in epoch {epoch}",
            what=Failure.WRONG_EPOCH,
            seq=seq,
            field="epoch",
        )
    if got < seq:
        return IntegrityError(
            f"expected seq {seq}, found seq {got}: record duplicated or reordered",
            what=Failure.REORDER if got < seq - 1 else Failure.DUPLICATE,
            seq=seq,
            field="seq",
        )
    return IntegrityError(
        f"expected seq {seq}, found seq {got}: {got - seq} record(s) missing",
        what=Failure.GAP,
        seq=seq,
        field="seq",
    )
