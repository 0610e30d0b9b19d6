"""Merkle tree hashing and proofs of RFC 9162 section 2.1 (the RFC 6962 tree). Pure: no I/O.

The tree over leaf hashes ``D[0:n]``:

- ``MTH({}) = SHA-256()``;
- ``MTH({d}) = d`` where ``d = SHA-256(0x00 || entry bytes)`` is a leaf hash;
- ``MTH(D[0:n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` for ``n > 1``, with
  ``k`` the largest power of two smaller than ``n``.

Functions here take leaf hashes, never entry bytes, except :func:`leaf_hash`.
Verifiers (:func:`verify_inclusion`, :func:`verify_consistency`) follow the
algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, return a
bool and never raise for bad input: a proof that does not verify is an
ordinary answer, not an error.

:class:`CompactRange` holds the roots of the perfect subtrees that make up
``D[0:n]`` (one per set bit of ``n``, largest first), so appending a leaf and
computing the root take O(log n) time and memory. The transfer log stores it
beside its entries; the audit verifier streams an export through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "SubtreeHash",
    "consistency_path",
    "consistency_proof",
    "inclusion_path",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(entry_bytes: bytes | memoryview) -> bytes:
    """SHA-256(0x00 || entry bytes): the hash of one log entry as a leaf (the bytes may
    be a view into a larger buffer, which spares copying them out first)."""
    return hashlib.sha256(_LEAF + entry_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The frontier of a tree: the perfect subtree roots covering ``D[0:size]``.

    ``hashes[i]`` is the root of a perfect subtree of ``2**h`` leaves for the
    i-th set bit of ``size`` from the top, so ``len(hashes) == size.bit_count()``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a compact range of size n holds one hash per set bit of n")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("every hash of a compact range is 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def append(self, leaf: bytes, completed: list[tuple[int, bytes]] | None = None) -> None:
        """Add one leaf hash at index ``size``. ``completed``, if given, receives
        ``(height, hash)`` of each perfect subtree this leaf completes, smallest first
        (a store of subtree hashes keeps some of them)."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        h = leaf
        hashes = self._hashes
        # Each trailing set bit of the old size is a perfect subtree that the new
        # leaf completes into one twice its height.
        n = self._size
        height = 0
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
            height += 1
            if completed is not None:
                completed.append((height, h))
        hashes.append(h)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH(D[0:size]): fold the subtree roots from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        it = reversed(self._hashes)
        r = next(it)
        for h in it:
            r = node_hash(h, r)
        return r

    def to_bytes(self) -> bytes:
        """The size as 8 bytes big-endian, then the subtree roots."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Inverse of :meth:`to_bytes`.

        Raises:
            ValueError: the length does not fit the size.
        """
        if len(data) < 8:
            raise ValueError("a compact range starts with an 8-byte size")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        if len(body) != HASH_SIZE * size.bit_count():
            raise ValueError("a compact range of size n holds one hash per set bit of n")
        return cls(size, [body[i:i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CompactRange) and other._size == self._size
                and other._hashes == self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    cr = CompactRange()
    for i in range(lo, hi):
        cr.append(leaves[i])
    return cr.root()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over all of ``leaf_hashes`` (SHA-256 of b"" for none)."""
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def _check_size(leaf_hashes: Sequence[bytes], size: int) -> None:
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} is outside 0..{len(leaf_hashes)}")


#: ``subtree(lo, hi)`` = MTH(D[lo:hi]) for a range that a proof needs: ``lo`` is a
#: multiple of a power of two at least ``hi - lo``, so the range is one subtree.
SubtreeHash = Callable[[int, int], bytes]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, from the leaf's sibling upwards.

    Raises:
        ValueError: ``index`` is not below ``size`` or ``size`` exceeds the leaves given.
    """
    _check_size(leaf_hashes, size)
    return inclusion_path(lambda lo, hi: _mth(leaf_hashes, lo, hi), index, size)


def inclusion_path(subtree: SubtreeHash, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) with the subtree hashes from ``subtree`` (a store of them,
    such as a tiled log, needs no list of every leaf).

    Raises:
        ValueError: ``index`` is not below ``size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi, m = 0, size, index
    # Walk down from the root; each level contributes the other side's root,
    # which the proof lists from the bottom up, hence the reversal.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 9162 2.1.4.1; empty when ``old`` is 0 or equals ``new``.

    Raises:
        ValueError: not ``0 <= old <= new <= len(leaf_hashes)``.
    """
    _check_size(leaf_hashes, new)
    return consistency_path(lambda lo, hi: _mth(leaf_hashes, lo, hi), old, new)


def consistency_path(subtree: SubtreeHash, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) with the subtree hashes from ``subtree``.

    Raises:
        ValueError: not ``0 <= old <= new``.
    """
    if not 0 <= old <= new:
        raise ValueError(f"old size {old} is not in 0..{new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    # SUBPROOF(m, D[lo:hi], complete), unrolled; like PATH it lists bottom up.
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree(lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


def _hashes_ok(*items: bytes) -> bool:
    return all(isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE for h in items)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root_hash: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether ``proof`` puts ``leaf`` at ``index`` in the tree of ``size``."""
    if not (0 <= index < size) or not _hashes_ok(leaf, root_hash, *proof):
        return False
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether ``proof`` shows the tree of ``old`` is a prefix of ``new``.

    The cases the RFC leaves out are decided as the transparency-dev library
    does, but stricter for the empty tree: equal sizes need equal roots and an
    empty proof; an old size of 0 needs the empty root and an empty proof.
    """
    if not (0 <= old <= new) or not _hashes_ok(old_root, new_root, *proof):
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # an exact power of two: the old tree is a complete subtree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
