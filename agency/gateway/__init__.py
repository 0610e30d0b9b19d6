"""The gateway: one service per organisation for practitioners, managers and case systems.

``store`` (sealed records), ``service`` (submit, approve, inbox, case record),
``api`` (REST for case systems), ``folder`` (files in, files out), ``pages``
(for people), ``home`` (setup), ``app`` (the Flask application), ``serve``
(gunicorn).
"""
