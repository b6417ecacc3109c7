"""The embedded server's port check: a listener blocks the port, a just-closed connection does not."""

from __future__ import annotations

import socket

from ledger import embedded


def test_a_listening_port_is_taken_and_lingering_connections_are_not() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert not embedded.port_is_free(port)

    accepted.close()  # the server side closes first: its port lingers in TIME_WAIT
    client.close()
    listener.close()

    assert embedded.port_is_free(port), "a stopped server's TIME_WAIT must not block a restart"
