"""RFC 6962 / RFC 9162 Merkle tree over record leaf hashes, streamed.

The tree is never held in memory: appends keep a *compact range* (one subtree
root per set bit of the size, largest first), and inclusion proofs are built by
streaming the leaves once through :class:`PathBuilder`. Hashing uses the
``0x00`` leaf and ``0x01`` node prefixes of RFC 6962 with BLAKE2b-256.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from auditd_py.chain.encoding import node_hash
from auditd_py.errors import ProofError

EMPTY_ROOT = bytes(32)
"""Root of the empty tree. RFC 6962 defines it as HASH(""); format 1 uses 32 zero
bytes so that no hash input is ever the empty string."""


def append(stack: list[bytes], size: int, leaf: bytes) -> None:
    """Append ``leaf`` to a compact range of ``size`` leaves, in place."""
    node = leaf
    k = size
    while k & 1:
        node = node_hash(stack.pop(), node)
        k >>= 1
    stack.append(node)


def root(stack: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 6962 MTH) of the tree whose compact range is ``stack``."""
    if not stack:
        return EMPTY_ROOT
    r = stack[-1]
    for node in reversed(stack[:-1]):
        r = node_hash(node, r)
    return r


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (reference implementation, for tests)."""
    stack: list[bytes] = []
    for i, leaf in enumerate(leaves):
        append(stack, i, leaf)
    return root(stack)


def _largest_pow2_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose subtree roots form PATH(index, D[0:size]), in proof order."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    out: list[tuple[int, int]] = []

    def rec(m: int, lo: int, hi: int) -> None:
        n = hi - lo
        if n <= 1:
            return
        k = _largest_pow2_below(n)
        if m < k:
            rec(m, lo, lo + k)
            out.append((lo + k, hi))
        else:
            rec(m - k, lo + k, hi)
            out.append((lo, lo + k))

    rec(index, 0, size)
    return out


def compact_ranges(size: int) -> list[tuple[int, int]]:
    """The leaf ranges of the compact range of a tree of ``size`` leaves, largest first."""
    out: list[tuple[int, int]] = []
    lo = 0
    for bit in range(size.bit_length() - 1, -1, -1):
        if size >> bit & 1:
            out.append((lo, lo + (1 << bit)))
            lo += 1 << bit
    return out


class PathBuilder:
    """Builds an inclusion proof for one leaf from the stream of all leaves.

    With ``start`` > 0 the leaves before ``start`` are not available (deleted by
    retention): ``start_stack`` is the compact range of the tree of ``start``
    leaves, and the first leaf fed is leaf ``start``. Every subtree an inclusion
    path of a later leaf needs from before ``start`` is a node of that compact
    range or is built from such nodes and later leaves (docs/FORMAT.md 16.2).
    """

    def __init__(
        self, index: int, size: int, start: int = 0, start_stack: Sequence[bytes] = ()
    ) -> None:
        if not 0 <= start <= index:
            raise ProofError(
                f"leaf {index} was deleted by retention (the archive now starts at {start})"
            )
        self.index = index
        self.size = size
        self._ranges = path_ranges(index, size)
        nodes = compact_ranges(start)
        if len(nodes) != len(start_stack):
            raise ProofError(
                f"the compact range at {start} must have {len(nodes)} nodes, not {len(start_stack)}"
            )
        self._prefix = list(zip(nodes, start_stack, strict=True))
        known = dict(self._prefix)
        self._roots: list[bytes | None] = [None] * len(self._ranges)
        self._order: list[int] = []
        for ri in sorted(range(len(self._ranges)), key=lambda i: self._ranges[i][0]):
            lo, hi = self._ranges[ri]
            if hi <= start:
                node = known.get((lo, hi))
                if node is None:  # cannot happen for a well-formed compact range
                    raise ProofError(f"subtree [{lo}, {hi}) is not in the compact range")
                self._roots[ri] = node
            else:
                self._order.append(ri)
        self._start = start
        self._cur = 0
        self._stack: list[bytes] = []
        self._count = 0
        self._pos = start
        self.leaf: bytes | None = None
        self._enter()

    def _enter(self) -> None:
        """Start the current range: from the compact range if it begins before ``start``."""
        self._stack, self._count = [], 0
        if self._cur < len(self._order):
            lo, _ = self._ranges[self._order[self._cur]]
            if lo < self._start:
                self._stack = [n for (a, _b), n in self._prefix if a >= lo]
                self._count = self._start - lo

    def feed(self, leaf: bytes) -> None:
        i = self._pos
        self._pos += 1
        if i >= self.size:
            return
        if i == self.index:
            self.leaf = leaf
            return
        ri = self._order[self._cur]
        hi = self._ranges[ri][1]
        append(self._stack, self._count, leaf)
        self._count += 1
        if i + 1 == hi:
            self._roots[ri] = root(self._stack)
            self._cur += 1
            self._enter()

    def path(self) -> list[bytes]:
        if self._pos < self.size or self.leaf is None:
            raise ProofError("not all leaves were fed to the proof builder")
        out: list[bytes] = []
        for r in self._roots:
            assert r is not None
            out.append(r)
        return out


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """Recompute the root from an inclusion path (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion path is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion path is shorter than the tree requires")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], want: bytes
) -> None:
    """Raise ProofError unless ``leaf`` is at ``index`` in the tree with root ``want``."""
    got = root_from_path(index, size, leaf, path)
    if not hmac.compare_digest(got, want):
        raise ProofError("inclusion path does not lead to the checkpoint's Merkle root")
