"""An entry's inclusion proof, computed from the tiles and checked as an auditor would."""

from __future__ import annotations

from dataclasses import dataclass

from audit.log_index import IndexState, LogIndex
from keys import NoteError, b64encode, open_checkpoint
from protocols import merkle


@dataclass(frozen=True)
class ProofView:
    ok: bool
    size: int
    root: str
    leaf: str
    path: tuple[str, ...]
    detail: str


def check_inclusion(index: LogIndex, body: bytes, seq: int, state: IndexState) -> ProofView:
    """The proof of ``seq`` in the newest verified checkpoint, checked against its signed
    root (RFC 9162 2.1.3.2) with the pinned log key."""
    size = state.checkpoint_size
    leaf = merkle.leaf_hash(body)
    path = index.tree(size).inclusion_proof(seq, size)
    try:
        cp = open_checkpoint(state.checkpoint or "", index.verifier)
    except NoteError as e:
        return ProofView(False, size, "", leaf.hex(), (), f"the checkpoint does not verify "
                         f"with the pinned log key: {e}")
    ok = merkle.verify_inclusion(leaf, seq, cp.size, path, cp.root)
    detail = (f"seq {seq} is in the tree of size {cp.size} that the checkpoint signs"
              if ok else f"the proof does not lead from seq {seq} to the signed root")
    return ProofView(ok, cp.size, b64encode(cp.root), leaf.hex(), tuple(h.hex() for h in path),
                     detail)
