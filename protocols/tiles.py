"""The C2SP ``tlog-tiles`` layout of the transfer log's tree. Pure: no I/O.

A tile at level ``L`` with index ``N`` holds up to 256 hashes: hash ``i`` is
``MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L])``, so level 0 holds the
leaf hashes and each hash at level ``L+1`` is the root of one full tile at
level ``L``. A tile narrower than 256 (the rightmost ones) is *partial*, served
at ``tile/L/N.p/W``; the tree of size ``s`` has, at level ``L``, a partial tile
of width ``floor(s / 256**L) mod 256`` when that is not 0.

:class:`TileStore` is what the log server keeps: the tiles' bytes (32 bytes a
hash), with the rightmost tile of each level growing as entries arrive. From
it any subtree hash, and so any inclusion or consistency proof
(:func:`protocols.merkle.inclusion_path`), costs a few tiles read and at most
255 hashes computed per subtree, never a pass over every leaf.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from protocols import merkle

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
HASH: Final = merkle.HASH_SIZE
#: The highest level a path may name (C2SP: 0 to 63).
MAX_LEVEL: Final = 63

_INDEX = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")


@dataclass(frozen=True)
class TileId:
    """A tile (``level`` 0..63) or, with ``level`` None, an entry bundle; ``width`` None
    for a full one (256), else 1..255."""

    level: int | None
    index: int
    width: int | None = None

    @property
    def count(self) -> int:
        """How many hashes (or entries) the tile holds."""
        return TILE_WIDTH if self.width is None else self.width

    def path(self) -> str:
        head = "tile/entries" if self.level is None else f"tile/{self.level}"
        tail = "" if self.width is None else f".p/{self.width}"
        return f"{head}/{encode_index(self.index)}{tail}"

    def needs_size(self) -> int:
        """The smallest tree size that holds the whole of this tile."""
        level = 0 if self.level is None else self.level
        return int((self.index * TILE_WIDTH + self.count) * TILE_WIDTH ** level)


def encode_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067``: 3-digit elements, all but the last with ``x``."""
    if n < 0:
        raise ValueError("a tile index is not negative")
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def parse_tile_path(path: str) -> TileId:
    """The tile a path after ``tile/`` names: ``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``.

    Only the one spelling C2SP allows is accepted (no leading zeros in ``L`` or
    ``W``, 3-digit index elements, ``x`` on all but the last).

    Raises:
        ValueError: not such a path.
    """
    head, sep, rest = path.partition("/")
    if not sep:
        raise ValueError("a tile path is <level>/<index> or entries/<index>")
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= MAX_LEVEL:
        level = int(head)
    else:
        raise ValueError("a tile level is 0 to 63, without leading zeros")
    width = None
    index_part, dot, width_part = rest.partition(".p/")
    if dot:
        if not _WIDTH.fullmatch(width_part) or not 1 <= int(width_part) < TILE_WIDTH:
            raise ValueError("a partial tile's width is 1 to 255, without leading zeros")
        width = int(width_part)
    if not _INDEX.fullmatch(index_part):
        raise ValueError("a tile index is 3-digit elements, all but the last led by x")
    index = int(index_part.replace("x", "").replace("/", ""))
    if encode_index(index) != index_part:
        raise ValueError("a tile index has no extra leading elements")
    return TileId(level, index, width)


def tiles_of(size: int, level: int = 0) -> list[TileId]:
    """Every tile at ``level`` of the tree of ``size``, the last one partial if need be."""
    n = size // TILE_WIDTH ** level
    out = [TileId(level, i) for i in range(n // TILE_WIDTH)]
    if n % TILE_WIDTH:
        out.append(TileId(level, n // TILE_WIDTH, n % TILE_WIDTH))
    return out


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree over ``hashes`` (a power of two of them)."""
    level = list(hashes)
    while len(level) > 1:
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def split_hashes(data: bytes) -> list[bytes]:
    return [data[i:i + HASH] for i in range(0, len(data), HASH)]


#: ``read(level, start, end)``: the hashes ``start`` to ``end - 1`` of a level,
#: all of which the store holds.
ReadHashes = Callable[[int, int, int], list[bytes]]


class TileStore:
    """Subtree hashes of a tree held as tiles: any MTH from few hashes.

    ``read`` returns the stored hashes of a level; level ``L`` holds one hash
    for each full subtree of ``256**L`` leaves.
    """

    def __init__(self, read: ReadHashes, size: int) -> None:
        self._read = read
        self.size = size

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for ``0 <= lo < hi <= size``: perfect aligned pieces from the
        left (largest first), folded from the right as a compact range is."""
        if not 0 <= lo < hi <= self.size:
            raise ValueError(f"no subtree {lo}..{hi} in a tree of size {self.size}")
        pieces: list[bytes] = []
        pos = lo
        while pos < hi:
            # The largest power of two that is aligned at pos and fits before hi.
            k = (hi - pos).bit_length() - 1
            if pos:
                k = min(k, (pos & -pos).bit_length() - 1)
            pieces.append(self._perfect(pos, k))
            pos += 1 << k
        r = pieces[-1]
        for h in reversed(pieces[:-1]):
            r = merkle.node_hash(h, r)
        return r

    def _perfect(self, start: int, height: int) -> bytes:
        level, below = divmod(height, TILE_HEIGHT)
        first = start >> (TILE_HEIGHT * level)
        return perfect_root(self._read(level, first, first + (1 << below)))

    def root(self) -> bytes:
        return merkle.EMPTY_ROOT if self.size == 0 else self.subtree(0, self.size)

    def compact_range(self) -> merkle.CompactRange:
        """The frontier of the whole tree (its perfect subtrees' roots, largest first), to
        go on appending to a tree read before."""
        hashes, pos = [], 0
        for height in reversed(range(self.size.bit_length())):
            if self.size >> height & 1:
                hashes.append(self._perfect(pos, height))
                pos += 1 << height
        return merkle.CompactRange(self.size, hashes)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Raises: ValueError: ``index`` not below ``size`` or ``size`` beyond the store."""
        self._check(size)
        return merkle.inclusion_path(self.subtree, index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """Raises: ValueError: not ``0 <= old <= new <= size``."""
        self._check(new)
        return merkle.consistency_path(self.subtree, old, new)

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of size {size} here (the size is {self.size})")


class TileBuilder:
    """The rightmost tile of every level, grown one leaf hash at a time.

    ``append`` returns the tiles it changed as ``(level, index, data)``; the
    caller stores them (a full tile is final, a partial one is replaced later).
    """

    def __init__(self, size: int = 0, edges: dict[int, bytes] | None = None) -> None:
        #: level -> the bytes of the rightmost, not yet full, tile of that level
        self.size = size
        self.edges = dict(edges or {})

    @classmethod
    def resume(cls, size: int, tile: Callable[[int, int], bytes]) -> TileBuilder:
        """The builder of a tree of ``size`` whose tiles ``tile(level, index)`` returns.

        Raises:
            ValueError: a rightmost tile is not as wide as the size says.
        """
        edges, level = {}, 0
        while count := size // TILE_WIDTH ** level:
            if width := count % TILE_WIDTH:
                data = tile(level, count // TILE_WIDTH)
                if len(data) != width * HASH:
                    raise ValueError(f"tile {level}/{count // TILE_WIDTH} holds "
                                     f"{len(data) // HASH} hashes, not {width}")
                edges[level] = data
            level += 1
        return cls(size, edges)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        changed: list[tuple[int, int, bytes]] = []
        h, level = leaf, 0
        self.size += 1
        while True:
            data = self.edges.get(level, b"") + h
            count = self.size // TILE_WIDTH ** level  # hashes at this level now
            index = (count - 1) // TILE_WIDTH
            changed.append((level, index, data))
            if len(data) < TILE_WIDTH * HASH:
                self.edges[level] = data
                return changed
            # A full tile: final, and its root is the next hash one level up.
            self.edges[level] = b""
            h = perfect_root(split_hashes(data))
            level += 1
