"""For auditors: export, verify, replay, report and inclusion proofs over the transfer log.

Never imports ``broker`` or ``agency``: a log to export is handed in as a
:class:`~audit.exporting.LogSource` by the composition root.
"""

from __future__ import annotations

from audit.errors import AuditError
from audit.export_dir import load_checkpoint_notes, parse_log_key
from audit.exporting import ExportSummary, LogSource, export
from audit.proofs import PROOF_FORMAT, ProofCheck, check_proof, prove
from audit.replaying import Mismatch, replay
from audit.reporting import Report, ReportFilters, ReportRow, report
from audit.verifying import VerifyResult, verify

__all__ = [
    "PROOF_FORMAT",
    "AuditError",
    "ExportSummary",
    "LogSource",
    "Mismatch",
    "ProofCheck",
    "Report",
    "ReportFilters",
    "ReportRow",
    "VerifyResult",
    "check_proof",
    "export",
    "load_checkpoint_notes",
    "parse_log_key",
    "prove",
    "replay",
    "report",
    "verify",
]
