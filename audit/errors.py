"""The exceptions of the audit package, rooted in :class:`AuditError`."""

from __future__ import annotations


class AuditError(Exception):
    """An export cannot be written or read as a whole (a missing file, an unusable key).

    A log that reads but does not verify is not an error: ``verify`` returns a
    failed ``VerifyResult``, ``replay`` a list of mismatches.
    """

    code = "audit_error"
