"""C2SP signed notes and checkpoints, against the published example of Go's note package."""

from __future__ import annotations

import pytest

from keys import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SigningKeyPair,
    b64decode,
    open_checkpoint,
    verify_note,
)

# The example of the C2SP signed-note spec and golang.org/x/mod/sumdb/note.
PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = ("If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n")
NOTE = (TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
        "KvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def _example_signer() -> NoteSigner:
    # The private key line is PRIVATE+KEY+name+hash+base64(0x01 || seed).
    _, _, name, _, blob = PRIVATE.split("+", 4)
    raw = b64decode(blob)
    assert raw[0] == 0x01
    return NoteSigner(name=name, pair=SigningKeyPair.from_seed(raw[1:]))


def test_verifier_line_of_the_example_key() -> None:
    assert _example_signer().verifier.line() == VERIFIER


def test_signing_the_example_gives_the_published_note() -> None:
    # Ed25519 is deterministic, so the signature line must match byte for byte.
    assert _example_signer().sign(TEXT) == NOTE


def test_the_published_note_verifies() -> None:
    assert verify_note(NOTE, NoteVerifier.parse(VERIFIER)) == TEXT


def test_a_changed_byte_in_the_text_fails() -> None:
    with pytest.raises(NoteError):
        verify_note(NOTE.replace("cryptography", "cryptographY"), NoteVerifier.parse(VERIFIER))


def test_a_changed_signature_fails() -> None:
    tampered = NOTE.replace("x08go/ZJ", "x08go/ZK")
    with pytest.raises(NoteError):
        verify_note(tampered, NoteVerifier.parse(VERIFIER))


def test_a_note_without_our_key_fails() -> None:
    other = NoteSigner("PeterNeumann", SigningKeyPair.generate())
    with pytest.raises(NoteError, match="no signature"):
        verify_note(other.sign(TEXT), NoteVerifier.parse(VERIFIER))
    with pytest.raises(NoteError, match="no signature"):
        verify_note(NOTE, NoteSigner("someone-else", SigningKeyPair.generate()).verifier)


def test_signatures_by_other_keys_are_ignored() -> None:
    extra = NoteSigner("witness", SigningKeyPair.generate()).sign(TEXT)
    both = NOTE + extra[len(TEXT) + 1:]
    assert verify_note(both, NoteVerifier.parse(VERIFIER)) == TEXT


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(TEXT, id="no signatures"),
        pytest.param(TEXT + "\n", id="empty signature block"),
        pytest.param(NOTE.replace("— ", "- "), id="hyphen for the em dash"),
        pytest.param(NOTE[:-1], id="no final newline"),
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        verify_note(note, NoteVerifier.parse(VERIFIER))


def test_verifier_key_whose_base64_holds_a_plus_sign() -> None:
    # The key text may contain "+", which separates the fields of the line.
    seed = 0
    while True:
        signer = NoteSigner("log", SigningKeyPair.from_seed(seed.to_bytes(32, "big")))
        if "+" in signer.verifier.line().split("+", 2)[2]:
            break
        seed += 1
    assert NoteVerifier.parse(signer.verifier.line()) == signer.verifier


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(VERIFIER.replace("c74f20a3", "c74f20a4"), id="wrong hash"),
        pytest.param("PeterNeumann+c74f20a3", id="no key"),
        pytest.param(VERIFIER.replace("+ARpc", "+AhPc"), id="not Ed25519"),
    ],
)
def test_bad_verifier_lines_are_refused(line: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.parse(line)


def test_checkpoint_round_trip_through_a_signed_note() -> None:
    signer = NoteSigner("wy-iisp.example/transfer-log", SigningKeyPair.generate())
    cp = Checkpoint(origin="wy-iisp.example/transfer-log", size=3, root=bytes(range(32)))
    note = signer.sign(cp.text())
    assert open_checkpoint(note, signer.verifier) == cp
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n3\n", "\n4\n"), signer.verifier)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("origin\n03\nAAAA\n", id="leading zero"),
        pytest.param("origin\n3\nAAAA\n", id="root not 32 bytes"),
        pytest.param("origin\n3\n", id="no root"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)
