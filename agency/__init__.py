"""For agencies: the SDK (send, receive, notices) and, beside it, the gateway.

Never imports ``broker`` or ``audit``; speaks to the broker only through
RabbitMQ and the wire format of :mod:`protocols.envelope`.
"""
