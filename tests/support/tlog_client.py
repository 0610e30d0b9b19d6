"""A tlog client written from the C2SP texts alone (tlog-tiles, tlog-checkpoint, signed-note).

It imports nothing of the project (hashlib, base64, nacl only), so the
project's tile and Merkle code is checked against a second reading of the
specs. ``fetch(path)`` returns the bytes at ``<prefix>/<path>`` (raising
LookupError for a 404).

From tlog-tiles: "the n-th tile at level l ... is the sequence of the
Merkle Tree Hashes MTH(D[(n*256+i) * 256**l : (n*256+i+1) * 256**l])";
"The partial tile at level l for a tree of size s has floor(s / 256**l) mod
256 entries"; tile indices are "zero-padded 3-digit path elements. All but the
last path element MUST begin with an x"; entry bundles are "sequences of
big-endian uint16 length-prefixed log entries", each hashing (RFC 6962) to
the level 0 tile's hash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import nacl.exceptions
import nacl.signing

Fetch = Callable[[str], bytes]


def _index(n: int) -> str:
    # C2SP: the decimal index, left-padded with zeros to a multiple of 3 digits, cut
    # into 3-digit elements, every one but the last prefixed with "x".
    digits = str(n)
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    elements = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + e for e in elements[:-1]] + elements[-1:])


def tile_path(level: int | str, n: int, width: int) -> str:
    return f"tile/{level}/{_index(n)}" + ("" if width == 256 else f".p/{width}")


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class TlogClient:
    def __init__(self, fetch: Fetch, key_line: str) -> None:
        self.fetch = fetch
        name, key_hash, key = key_line.split("+", 2)  # base64 may hold "+"
        raw = base64.b64decode(key)
        assert raw[0] == 1, "an Ed25519 key is 0x01 || 32 bytes"
        self.name = name
        self.key_hash = bytes.fromhex(key_hash)
        self.key = nacl.signing.VerifyKey(raw[1:])
        self.fetched: list[str] = []

    def checkpoint(self) -> tuple[str, int, bytes]:
        """The served checkpoint, its signature checked: (origin, size, root)."""
        note = self.fetch("checkpoint").decode("utf-8")
        text, sep, sigs = note.partition("\n\n")
        assert sep, "a signed note has a blank line before its signatures"
        body = text + "\n"
        ok = False
        for line in sigs.rstrip("\n").split("\n"):
            assert line.startswith("\u2014 "), "a signature line starts with an em dash"
            name, sig = line[2:].split(" ")
            blob = base64.b64decode(sig)
            if name == self.name and blob[:4] == self.key_hash:
                try:
                    self.key.verify(body.encode("utf-8"), blob[4:])
                    ok = True
                except nacl.exceptions.BadSignatureError:
                    pass
        assert ok, "no signature by the trusted key"
        origin, size, root = body.split("\n")[:3]
        return origin, int(size), base64.b64decode(root)

    def hashes(self, level: int, start: int, count: int, size: int) -> list[bytes]:
        """Hashes ``start``..``start+count-1`` of a level, from the tiles of tree ``size``."""
        out: list[bytes] = []
        at_level = size // 256 ** level  # hashes that level holds
        for n in range(start // 256, (start + count - 1) // 256 + 1):
            width = min(256, at_level - n * 256)
            path = tile_path(level, n, width)
            self.fetched.append(path)
            data = self.fetch(path)
            assert len(data) == 32 * width, f"{path}: {len(data)} bytes"
            for i in range(width):
                if start <= n * 256 + i < start + count:
                    out.append(data[32 * i:32 * i + 32])
        assert len(out) == count
        return out

    def subtree(self, start: int, height: int, size: int) -> bytes:
        """MTH of the 2**height leaves from ``start`` (aligned), from one tile level."""
        level, below = divmod(height, 8)
        hs = self.hashes(level, start // 256 ** level, 1 << below, size)
        while len(hs) > 1:
            hs = [_node(hs[i], hs[i + 1]) for i in range(0, len(hs), 2)]
        return hs[0]

    def root(self, size: int) -> bytes:
        """MTH(D[0:size]) from the tiles: the perfect subtrees of the set bits of size,
        largest first, folded from the right."""
        if size == 0:
            return hashlib.sha256(b"").digest()
        parts, start = [], 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                parts.append(self.subtree(start, height, size))
                start += 1 << height
        r = parts[-1]
        for h in reversed(parts[:-1]):
            r = _node(h, r)
        return r

    def entries(self, size: int) -> list[bytes]:
        """Every entry, from the bundles, each checked against its level 0 tile hash."""
        out: list[bytes] = []
        for n in range((size + 255) // 256):
            width = min(256, size - n * 256)
            bundle = self.fetch(tile_path("entries", n, width))
            leaves = self.hashes(0, n * 256, width, size)
            pos = 0
            for i in range(width):
                length = int.from_bytes(bundle[pos:pos + 2], "big")
                entry = bundle[pos + 2:pos + 2 + length]
                pos += 2 + length
                assert hashlib.sha256(b"\x00" + entry).digest() == leaves[i]
                out.append(entry)
            assert pos == len(bundle), "a bundle holds exactly its entries"
        return out
