"""The registry: who may share what with whom, as signed, numbered directory versions.

Modules: ``store`` (SQLAlchemy; every change a new signed version), ``changes``
(the pure changes it applies, key files checked there), ``history`` (the
history in words), ``attention`` (what an administrator should look at),
``client`` (fetch and verify directories over HTTP(S), for the broker and
agency clients), ``app`` (Flask: the REST API under ``/api/v1``, the web
pages, ``/openapi.json`` generated from the schemas), ``throttle`` (wrong
tokens slowed, valid ones never refused), ``cli`` (the ``registry``
commands), ``serve`` (gunicorn), ``errors`` (the exception tree). Importing this package imports
none of Flask, SQLAlchemy or gunicorn; each module brings what it needs.
"""
