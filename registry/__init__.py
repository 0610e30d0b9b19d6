"""The registry: who may share what with whom, as signed, numbered directory versions.

Modules: ``store`` (SQLAlchemy; every change a new signed version), ``changes``
(the pure changes it applies), ``client`` (fetch and verify directories over
HTTP, for the broker and agency clients), ``app`` (Flask: the REST API under
``/api/v1``, the web pages, ``/openapi.json``), ``cli`` (the ``registry``
commands), ``errors`` (the exception tree). Importing this package imports
none of Flask, SQLAlchemy or gunicorn; each module brings what it needs.
"""
