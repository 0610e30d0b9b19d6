"""For the router's operator: the router, RabbitMQ topology and nodes, transfer log storage.

Never imports ``agency`` or ``audit``."""
