"""A stopped node's ports count as free while its old connections linger in TIME_WAIT."""

from __future__ import annotations

import socket

from broker.node import _port_is_free


def _time_wait_on_a_listening_port() -> int:
    """A port whose listener is closed and whose accepted connection the server side closed
    first, so that connection sits in TIME_WAIT on the port (as after a broker stops).
    The listener has SO_REUSEADDR, as RabbitMQ's do."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_is_free_for_a_listener() -> None:
    port = _time_wait_on_a_listening_port()
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        plain.bind(("127.0.0.1", port))
        bound_without_reuse = True
    except OSError:
        bound_without_reuse = False
    finally:
        plain.close()
    assert not bound_without_reuse, "the port should be in TIME_WAIT for this test to mean much"
    assert _port_is_free("127.0.0.1", port)


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not _port_is_free("127.0.0.1", s.getsockname()[1])
