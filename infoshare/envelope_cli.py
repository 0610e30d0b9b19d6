"""``infoshare envelope inspect``: what an envelope says and which checks it passes.

Invariants: prints codes, hashes and key ids only. The payload is never
decrypted and its content never printed, so the output may be pasted into a
ticket. Bad input (an unreadable file, a body that fails check 1, a directory
that does not verify) exits 1 with a one-line message, never a traceback. A
policy refusal is an answer, not bad input: it is printed and exits 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from keys import parse_public_key_text
from keys.errors import KeyFormatError
from protocols.directory import format_time, verify_directory
from protocols.envelope import (
    MAX_BODY_BYTES,
    EnvelopeRefused,
    ParsedEnvelope,
    parse_envelope,
)
from protocols.errors import DirectoryError
from protocols.model import Directory, Header, Signature, amqp_user
from protocols.policy import LoggedMessage, decide

__all__ = ["envelope"]

# A signed directory of a large deployment is a few MiB; this only bounds a mistake.
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
MAX_KEY_FILE_BYTES = 4096


class _EmptyLog:
    """No earlier entries: inspecting judges the envelope on its own."""

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        return ()


def _read(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, so an oversized file is seen as such."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except OSError as e:
        raise click.ClickException(f"{what} {path}: cannot read ({e.strerror})") from None


def _show(label: str, value: object) -> None:
    click.echo(f"{label:<18}{value}")


def _show_header(h: Header) -> None:
    _show("message_id", h.message_id)
    _show("kind", h.kind)
    _show("protocol", h.protocol)
    _show("purpose", h.purpose)
    _show("sender", h.sender)
    _show("recipient", h.recipient)
    _show("created_at", format_time(h.created_at))
    _show("in_reply_to", h.in_reply_to or "-")
    consent = "-" if h.consent is None else (
        h.consent.status if h.consent.ground is None
        else f"{h.consent.status} ({h.consent.ground})")
    _show("consent", consent)
    _show("subject_informed", "true" if h.subject_informed else "false")
    _show("data_categories", ", ".join(h.data_categories) or "-")
    _show("payload.cipher", h.payload.cipher)
    _show("payload.key", h.payload.recipient_key)
    _show("payload.length", h.payload.length)
    _show("payload.sha256", h.payload.sha256)


def _show_signatures(signatures: Sequence[Signature]) -> None:
    for i, s in enumerate(signatures):
        role = "sender" if i == 0 else "countersignature"
        _show(f"signatures[{i}]", f"{s.key} ({role})")


def _show_payload_checks(env: ParsedEnvelope) -> None:
    ref = env.header.payload
    length_ok = len(env.payload) == ref.length
    hash_ok = env.payload_sha256 == ref.sha256
    # What was received is shown only where it differs from the header's claim.
    _show("payload length", "pass" if length_ok else f"FAIL ({len(env.payload)} received)")
    _show("payload sha256", "pass" if hash_ok else f"FAIL ({env.payload_sha256} received)")


def _load_directory(directory_file: Path, registry_key: Path) -> Directory:
    key_text = _read(registry_key, MAX_KEY_FILE_BYTES, "registry key")
    try:
        pinned = parse_public_key_text(key_text.decode("ascii"))
    except (UnicodeDecodeError, KeyFormatError):
        raise click.ClickException(
            f"registry key {registry_key}: not one line of base64 of a 32-byte public key"
        ) from None
    document = _read(directory_file, MAX_DIRECTORY_BYTES, "directory")
    try:
        return verify_directory(document, pinned)
    except DirectoryError as e:
        raise click.ClickException(f"directory {directory_file}: {e}") from None


def _show_decision(env: ParsedEnvelope, directory: Directory, user_id: str | None) -> None:
    if user_id is None:
        user_id = amqp_user(env.header.sender)
        _show("user_id", f"{user_id} (assumed: the sender's own)")
    else:
        _show("user_id", user_id)
    now = datetime.now(UTC)
    _show("directory", f"version {directory.version}")
    _show("now", format_time(now))
    decision = decide(env.submission(user_id), directory, _EmptyLog(), now)
    reason = "" if decision.reason is None else f" ({decision.reason.value})"
    _show("decision", f"{decision.decision}{reason}")


@click.group("envelope")
def envelope() -> None:
    """Look at wire v1 envelopes."""


@envelope.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--directory", "directory_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A signed directory document; with it, checks 2 to 13 run too.")
@click.option("--registry-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's public key file (one line of base64) the directory "
                   "must verify against.")
@click.option("--user-id", help="The AMQP user_id the envelope is taken to arrive with "
                                "(default: the sender unit's own user).")
def inspect(file: Path, directory_file: Path | None, registry_key: Path | None,
            user_id: str | None) -> None:
    """Print FILE's header, hashes, signatures and the checks it passes.

    Without --directory only check 1 (decoding) and the payload length and
    hash are checked. With --directory and --registry-key the policy decides
    as the broker would now, with an empty transfer log. Exits 1 on bad input,
    0 otherwise, whatever the decision.
    """
    if (directory_file is None) != (registry_key is None):
        raise click.ClickException("--directory and --registry-key go together")
    if user_id is not None and directory_file is None:
        raise click.ClickException("--user-id needs --directory")
    # Verify the directory first: a bad one is bad input whatever the envelope is.
    directory = (None if directory_file is None or registry_key is None
                 else _load_directory(directory_file, registry_key))
    body = _read(file, MAX_BODY_BYTES, "envelope")
    try:
        env = parse_envelope(body)
    except EnvelopeRefused as e:
        if e.header is not None:
            _show_header(e.header)
        raise click.ClickException(
            f"check 1 (decoding, sizes, version): refused: {e.reason.value} ({e.detail})"
        ) from None
    _show_header(env.header)
    _show("header_sha256", env.header_sha256)
    _show_signatures(env.signatures)
    _show("check 1", "pass (decoding, sizes, version)")
    _show_payload_checks(env)
    if directory is not None:
        _show_decision(env, directory, user_id)
