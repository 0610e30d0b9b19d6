"""The pure domain core: the rules of information sharing protocols and the policy.

No Flask, no pika, no database, no clock: time and the log are passed in.
"""

from protocols.errors import DefinitionError, DirectoryError, ProtocolsError
from protocols.model import (
    Address,
    Directory,
    Header,
    KeyRecord,
    Organisation,
    Protocol,
    ProtocolStatus,
    Purpose,
    Signature,
    Submission,
    Unit,
)
from protocols.policy import Decision, LoggedMessage, LogView, decide
from protocols.reasons import Reason

__all__ = [
    "Address",
    "Decision",
    "DefinitionError",
    "Directory",
    "DirectoryError",
    "Header",
    "KeyRecord",
    "LogView",
    "LoggedMessage",
    "Organisation",
    "Protocol",
    "ProtocolStatus",
    "ProtocolsError",
    "Purpose",
    "Reason",
    "Signature",
    "Submission",
    "Unit",
    "decide",
]
