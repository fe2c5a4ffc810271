"""The sealer: numbers, links, MACs and Merkle-appends records; closes epochs.

Pure state machine. The caller owns the clock and the files: it feeds
:class:`~auditd_py.chain.encoding.Fields`, writes the returned lines, and asks
for :meth:`Sealer.close_epoch` when an epoch ends, then persists
:meth:`Sealer.snapshot` (which no longer holds the previous epoch's keys).
"""

from __future__ import annotations

from binascii import hexlify
from collections.abc import Sequence
from dataclasses import dataclass

from auditd_py.chain import merkle, speedups
from auditd_py.chain.checkpoint import ZERO, Checkpoint
from auditd_py.chain.encoding import (
    _CLOSE_NL,
    _LEAF,
    _LINK,
    _LINK_OPEN,
    _MAC_OPEN,
    _NODE,
    Fields,
    encode_body,
    mac_state,
)
from auditd_py.chain.keys import evolve_mac_key, evolve_sign_seed, public_key_of
from auditd_py.chain.link import check_record
from auditd_py.errors import FormatError


@dataclass(frozen=True, slots=True)
class SealerState:
    """Everything needed to continue a chain: what the state file stores."""

    archive: str
    epoch: int
    epoch_start: int
    epoch_first_seq: int
    mac_key: bytes
    sign_seed: bytes
    seq: int
    link: bytes
    stack: tuple[bytes, ...]
    mac: bytes = ZERO
    prev_checkpoint: bytes = ZERO

    @classmethod
    def genesis(
        cls, archive: str, genesis: bytes, mac_key: bytes, sign_seed: bytes, now: int
    ) -> SealerState:
        return cls(archive, 0, now, 0, mac_key, sign_seed, 0, genesis, ())


_NEVER = 1 << 63  # a deadline no record time reaches


def _unencodable(f: Fields, exc: FormatError) -> Fields:
    """The record with its attributes replaced by the reason they could not be sealed."""
    return Fields(
        f.time_ns,
        f.source.encode("utf-8", "replace").decode("utf-8"),
        f.message,
        None,
        {"attrs_error": exc.message, "attrs_repr": repr(f.attrs)[:4096]},
    )


def _encode(seq: int, epoch: int, f: Fields) -> bytes:
    """A record body as :meth:`Sealer.seal_many` encodes it (for the compiled loop's
    records that are not its common case)."""
    try:
        return encode_body(seq, epoch, f)
    except FormatError as exc:  # attrs a source could not encode: keep the line
        return encode_body(seq, epoch, _unencodable(f, exc))


class Sealer:
    """Seals records into lines for one archive, one epoch at a time."""

    def __init__(self, state: SealerState) -> None:
        self.archive = state.archive
        self.epoch = state.epoch
        self.epoch_start = state.epoch_start
        self.epoch_first_seq = state.epoch_first_seq
        self._mac_key = state.mac_key
        self._sign_seed = state.sign_seed
        self._mac = mac_state(state.mac_key)
        self.seq = state.seq
        self.link = state.link
        self.mac = state.mac
        self.stack = list(state.stack)
        self.prev_checkpoint = state.prev_checkpoint

    @property
    def epoch_records(self) -> int:
        return self.seq - self.epoch_first_seq

    def seal(self, f: Fields) -> bytes:
        """Seal one record; return its line (with newline)."""
        lines, _ = self.seal_many((f,), 0, _NEVER, None)
        return lines

    def seal_many(
        self, batch: Sequence[Fields], start: int, deadline: int, limit: int | None
    ) -> tuple[bytes, int]:
        """Seal ``batch[start:]`` into joined lines, the same bytes as :meth:`seal` each.

        Stops before a record whose time is ``>= deadline`` or when ``seq``
        reaches ``limit`` (the epoch is due: the caller ends it and calls again).
        Returns (the lines, the index of the first record not sealed). The
        compiled loop (:mod:`~auditd_py.chain.speedups`) seals the bodies when it
        is active; :meth:`_seal_pure` is the reference it must equal byte for byte.
        """
        loop = speedups.compiled()
        if loop is None:
            return self._seal_pure(batch, start, deadline, limit)
        lines, i, self.link, self.mac = loop.seal_fields(
            batch if type(batch) is list else list(batch),
            start,
            deadline,
            limit if limit is not None else -1,
            self.seq,
            self.epoch,
            self.link,
            self.mac,
            self._mac_key,
            self.stack,
            _encode,
        )
        self.seq += i - start
        return lines, i

    def _seal_pure(
        self, batch: Sequence[Fields], start: int, deadline: int, limit: int | None
    ) -> tuple[bytes, int]:
        """:meth:`seal_many` in pure Python: the reference loop."""
        seq, epoch, link, mac = self.seq, self.epoch, self.link, self.mac
        stack = self.stack
        pop, push = stack.pop, stack.append
        leaf_copy, link_copy, node_copy = _LEAF.copy, _LINK.copy, _NODE.copy
        mac_copy = self._mac.copy
        hx = hexlify
        join = b"".join  # one copy per line, not one per concatenation
        stop = limit if limit is not None else -1
        out: list[bytes] = []
        add = out.append
        i = start
        n = len(batch)
        try:
            while i < n:
                f = batch[i]
                if f.time_ns >= deadline or seq == stop:
                    break
                try:
                    body = encode_body(seq, epoch, f)
                except FormatError as exc:  # attrs a source could not encode: keep the line
                    body = encode_body(seq, epoch, _unencodable(f, exc))
                # Inlined for speed (one call per record costs ~10%): the same steps as
                # chain.link.chain_step, then the MAC and merkle.append; keep them in step.
                st = leaf_copy()
                st.update(body)
                node = st.digest()
                st = link_copy()
                st.update(link)
                st.update(mac)
                st.update(node)
                link = st.digest()
                st = mac_copy()
                st.update(link)
                mac = st.digest()
                k = seq
                while k & 1:
                    st = node_copy()
                    st.update(pop())
                    st.update(node)
                    node = st.digest()
                    k >>= 1
                push(node)
                seq += 1
                add(join((body, _LINK_OPEN, hx(link), _MAC_OPEN, hx(mac), _CLOSE_NL)))
                i += 1
        finally:
            self.seq, self.link, self.mac = seq, link, mac
        return b"".join(out), i

    def adopt(self, line: bytes) -> None:
        """Take an already written line as the next record (crash recovery).

        Raises IntegrityError or FormatError unless ``line`` is exactly the next
        record of this chain, MAC'd with this epoch's key.
        """
        _, link, mac, leaf = check_record(
            line, self.seq, self.epoch, self.link, self.mac, self._mac
        )
        merkle.append(self.stack, self.seq, leaf)
        self.seq += 1
        self.link = link
        self.mac = mac

    def checkpoint(self, end: int, reason: str) -> Checkpoint:
        """The signed checkpoint that would close the current epoch now."""
        next_seed = evolve_sign_seed(self._sign_seed)
        cp = Checkpoint(
            archive=self.archive,
            epoch=self.epoch,
            reason=reason,
            start=self.epoch_start,
            end=max(end, self.epoch_start),
            seq_first=self.epoch_first_seq,
            seq_end=self.seq,
            chain_head=self.link,
            mac_head=self.mac,
            merkle_root=merkle.root(self.stack),
            prev=self.prev_checkpoint,
            public_key=public_key_of(self._sign_seed),
            next_public_key=public_key_of(next_seed),
        )
        return cp.signed(self._sign_seed)

    def evolve(self, cp: Checkpoint) -> None:
        """Move to the next epoch after ``cp`` is durably written: keys go one way."""
        self.epoch += 1
        self.epoch_start = cp.end
        self.epoch_first_seq = self.seq
        self.prev_checkpoint = cp.digest
        self._mac_key = evolve_mac_key(self._mac_key)
        self._sign_seed = evolve_sign_seed(self._sign_seed)
        self._mac = mac_state(self._mac_key)

    def snapshot(self) -> SealerState:
        return SealerState(
            archive=self.archive,
            epoch=self.epoch,
            epoch_start=self.epoch_start,
            epoch_first_seq=self.epoch_first_seq,
            mac_key=self._mac_key,
            sign_seed=self._sign_seed,
            seq=self.seq,
            link=self.link,
            stack=tuple(self.stack),
            mac=self.mac,
            prev_checkpoint=self.prev_checkpoint,
        )
