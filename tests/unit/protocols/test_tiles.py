"""The tlog-tiles layout and proofs from tiles, against the RFC 9162 functions over every leaf."""

from __future__ import annotations

import hashlib

import pytest

from protocols import merkle
from protocols.tiles import (
    TILE_WIDTH,
    TileBuilder,
    TileId,
    TileStore,
    encode_index,
    parse_tile_path,
    split_hashes,
    tiles_of,
)


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def store_of(hs: list[bytes]) -> tuple[TileStore, dict[tuple[int, int], bytes]]:
    b = TileBuilder()
    tiles: dict[tuple[int, int], bytes] = {}
    for h in hs:
        for level, index, data in b.append(h):
            tiles[(level, index)] = data

    def read(level: int, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        for i in range(start, end):
            out.append(split_hashes(tiles[(level, i // TILE_WIDTH)])[i % TILE_WIDTH])
        return out

    return TileStore(read, len(hs)), tiles


def test_index_paths_are_spelled_as_c2sp_says() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert TileId(0, 1234067).path() == "tile/0/x001/x234/067"
    assert TileId(None, 5, 17).path() == "tile/entries/005.p/17"
    assert parse_tile_path("2/x001/x234/067.p/9") == TileId(2, 1234067, 9)
    assert parse_tile_path("entries/000") == TileId(None, 0)


@pytest.mark.parametrize("bad", [
    "01/000", "64/000", "0/1", "0/0000", "0/x000/001", "0/001.p/0", "0/001.p/256",
    "0/001.p/07", "0/x01/001", "0", "entries/001/", "0/001.p/", "x/000", "-1/000",
    "0/001.p/1.p/2"])
def test_other_spellings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_tile_path(bad)


def test_the_tiles_of_a_size_are_the_ones_the_spec_counts() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    # partial level 0 tile of width 112, one full level 1 tile, one partial level 1
    # tile of width 17, and one partial level 2 tile of width 1"
    lv0, lv1, lv2 = tiles_of(70_000, 0), tiles_of(70_000, 1), tiles_of(70_000, 2)
    assert len(lv0) == 274 and lv0[-1] == TileId(0, 273, 112)
    assert lv1 == [TileId(1, 0), TileId(1, 1, 17)]
    assert lv2 == [TileId(2, 0, 1)]
    assert tiles_of(256, 1) == [TileId(1, 0, 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 511, 600, 1000])
def test_subtrees_and_proofs_from_tiles_equal_those_from_every_leaf(n: int) -> None:
    hs = leaves(n)
    store, _ = store_of(hs)
    assert store.root() == merkle.root(hs)
    for size in {1, n // 3 or 1, n // 2 or 1, n - 1 or 1, n}:
        for index in {0, size // 2, size - 1}:
            assert store.inclusion_proof(index, size) == merkle.inclusion_proof(hs, index,
                                                                                size)
        for old in {0, 1, size // 2, size}:
            assert store.consistency_proof(old, size) == merkle.consistency_proof(hs, old,
                                                                                  size)


def test_higher_levels_hold_the_roots_of_full_tiles_below() -> None:
    hs = leaves(3 * 256 + 5)
    _, tiles = store_of(hs)
    assert split_hashes(tiles[(1, 0)]) == [merkle.root(hs[i * 256:(i + 1) * 256])
                                           for i in range(3)]
    assert len(tiles[(0, 3)]) == 5 * 32
