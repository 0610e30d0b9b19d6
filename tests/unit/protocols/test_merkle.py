"""RFC 9162 trees: known answers from the shared vectors, and proof properties.

Every proof the module generates must verify, and a single flipped bit in a
proof hash, a root, a leaf, or a changed index or size must make it fail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import merkle
from protocols.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# A copy of the public RFC 6962 vectors, kept with the tests so they run anywhere.
VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors"
                      / "rfc6962.json").read_text())
INPUTS = [bytes.fromhex(x) for x in VECTORS["leaf_inputs"]]
LEAVES = [leaf_hash(x) for x in INPUTS]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots_by_size"]]


def flip(data: bytes, bit: int) -> bytes:
    i, b = divmod(bit % (len(data) * 8), 8)
    return data[:i] + bytes([data[i] ^ (1 << b)]) + data[i + 1:]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# --- known answers ---------------------------------------------------------------------


def test_leaf_and_node_hashes_have_their_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32
                                                             + b"b" * 32).digest()
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_the_vectors(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_compact_range_roots_match_the_vectors(size: int) -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:size])
    assert cr.size == size
    assert len(cr.hashes) == bin(size).count("1")
    assert cr.root() == ROOTS[size]
    assert CompactRange.from_bytes(cr.to_bytes()) == cr


def test_inclusion_proofs_verify_against_the_vector_roots() -> None:
    for size in range(1, len(ROOTS)):
        for i in range(size):
            proof = inclusion_proof(LEAVES, i, size)
            assert verify_inclusion(LEAVES[i], i, size, proof, ROOTS[size])
            assert not verify_inclusion(LEAVES[i], i, size, proof, ROOTS[size - 1])


def test_known_inclusion_proof_shape() -> None:
    # Leaf 0 of 8: siblings are leaf 1, MTH(2..3), MTH(4..7), bottom up.
    proof = inclusion_proof(LEAVES, 0, 8)
    assert proof == [LEAVES[1], root(LEAVES[2:4]), root(LEAVES[4:8])]
    # Leaf 6 of 7: its only sibling at the bottom is MTH(4..5), then MTH(0..3).
    assert inclusion_proof(LEAVES, 6, 7) == [root(LEAVES[4:6]), root(LEAVES[0:4])]


def test_consistency_proofs_verify_between_every_pair_of_vector_roots() -> None:
    for new in range(len(ROOTS)):
        for old in range(new + 1):
            proof = consistency_proof(LEAVES, old, new)
            assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof), (old, new)
            if 0 < old < new:
                assert not verify_consistency(old, new, ROOTS[old - 1], ROOTS[new], proof)
                assert not verify_consistency(old, new, ROOTS[old], ROOTS[new - 1], proof)


def test_known_consistency_proof_shape() -> None:
    # RFC 9162 2.1.4.3: between sizes 3 and 7 the proof is c, d, g, l.
    d = LEAVES
    c, dd = d[2], d[3]
    g = root(d[0:2])
    l_ = root(d[4:7])
    assert consistency_proof(d, 3, 7) == [c, dd, g, l_]
    assert consistency_proof(d, 4, 7) == [l_]
    assert consistency_proof(d, 6, 7) == [root(d[4:6]), d[6], root(d[0:4])]


# --- edges -----------------------------------------------------------------------------


def test_edges_of_the_verifiers() -> None:
    one = LEAVES[:1]
    assert inclusion_proof(one, 0, 1) == []
    assert verify_inclusion(LEAVES[0], 0, 1, [], ROOTS[1])
    assert not verify_inclusion(LEAVES[0], 0, 1, [LEAVES[1]], ROOTS[1])  # a proof too long
    assert not verify_inclusion(LEAVES[0], 1, 1, [], ROOTS[1])
    assert not verify_inclusion(LEAVES[0], -1, 1, [], ROOTS[1])
    assert not verify_inclusion(LEAVES[0], 0, 0, [], ROOTS[0])
    assert not verify_inclusion(LEAVES[0][:31], 0, 1, [], ROOTS[1])
    # Equal sizes: no proof, equal roots.
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[1]])
    # From the empty tree: only with the empty root and no proof.
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    # Shrinking is never consistent; nor is an empty proof between different sizes.
    assert not verify_consistency(5, 4, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(4, 5, ROOTS[4], ROOTS[5], [])


def test_generators_refuse_out_of_range_arguments() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 3, 3)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 0, 9)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, 4, 3)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, 1, 9)
    with pytest.raises(ValueError):
        CompactRange(3, [LEAVES[0]])
    with pytest.raises(ValueError):
        CompactRange.from_bytes(b"\x00" * 7)
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


def test_compact_range_is_small_and_copies_are_independent() -> None:
    cr = CompactRange()
    cr.extend(leaves(1000))
    assert len(cr.hashes) == bin(1000).count("1")
    other = cr.copy()
    other.append(LEAVES[0])
    assert cr.size == 1000 and other.size == 1001
    assert cr.root() == root(leaves(1000))


# --- properties ------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=70)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), size=sizes)
def test_every_inclusion_proof_verifies_and_any_flip_fails(data: st.DataObject,
                                                           size: int) -> None:
    ls = leaves(size)
    r = root(ls)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(ls, index, size)
    assert len(proof) <= size.bit_length()
    assert verify_inclusion(ls[index], index, size, proof, r)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(flip(ls[index], bit), index, size, proof, r)
    assert not verify_inclusion(ls[index], index, size, proof, flip(r, bit))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:which], flip(proof[which], bit), *proof[which + 1:]]
        assert not verify_inclusion(ls[index], index, size, bad, r)
        assert not verify_inclusion(ls[index], index, size, proof[:-1], r)
    assert not verify_inclusion(ls[index], index, size, [*proof, r], r)
    other = data.draw(st.integers(0, size - 1))
    if ls[other] != ls[index]:
        assert not verify_inclusion(ls[other], index, size, proof, r)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), new=sizes)
def test_every_consistency_proof_verifies_and_any_flip_fails(data: st.DataObject,
                                                             new: int) -> None:
    ls = leaves(new)
    old = data.draw(st.integers(0, new))
    old_root, new_root = root(ls[:old]), root(ls)
    proof = consistency_proof(ls, old, new)
    assert verify_consistency(old, new, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(old, new, flip(old_root, bit), new_root, proof)
    if old > 0:  # every tree extends the empty one, whatever its root
        assert not verify_consistency(old, new, old_root, flip(new_root, bit), proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:which], flip(proof[which], bit), *proof[which + 1:]]
        assert not verify_consistency(old, new, old_root, new_root, bad)
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    # A tree that differs in any one leaf before ``old`` is not an extension.
    if old > 0:
        at = data.draw(st.integers(0, old - 1))
        forked = [*ls[:at], flip(ls[at], bit), *ls[at + 1:]]
        assert not verify_consistency(old, new, old_root, root(forked), proof)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=40))
def test_compact_range_agrees_with_the_recursive_definition(inputs: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in inputs]

    def mth(d: list[bytes]) -> bytes:
        if not d:
            return EMPTY_ROOT
        if len(d) == 1:
            return d[0]
        k = 1
        while k * 2 < len(d):
            k *= 2
        return node_hash(mth(d[:k]), mth(d[k:]))

    cr = CompactRange()
    for i, h in enumerate(hashes):
        cr.append(h)
        assert cr.root() == mth(hashes[:i + 1])
    assert merkle.root(hashes) == mth(hashes)


def test_appending_reports_every_perfect_subtree_it_completes() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(1 << 12)]
    cr = merkle.CompactRange()
    for i, leaf in enumerate(leaves):
        completed: list[tuple[int, bytes]] = []
        cr.append(leaf, completed)
        size = i + 1
        heights = [h for h in range(1, 13) if size % (1 << h) == 0]
        assert completed == [(h, merkle.root(leaves[size - (1 << h):size])) for h in heights]
