"""The exceptions of the protocols package, rooted in :class:`ProtocolsError`."""

from __future__ import annotations


class ProtocolsError(Exception):
    """Base of every error raised by the protocols package."""


class DefinitionError(ProtocolsError):
    """A protocol file is invalid. ``problems`` maps field paths to messages."""

    def __init__(self, source: str, problems: dict[str, list[str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" for path, msgs in sorted(problems.items())
                 for msg in msgs]
        super().__init__("\n".join(lines) or f"{source}: invalid")


class DirectoryError(ProtocolsError):
    """A directory document is malformed, unsigned, or signed by a key not pinned."""
