"""The broker: envelopes, routing, the transfer log, the agency client and audit."""
