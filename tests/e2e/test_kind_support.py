"""The parts of the kind target that need no Docker: the relay to host services and the choice
of the host's address on kind's network."""

from __future__ import annotations

import socket
import threading

from tests.e2e.kind import Relay, ipv4_gateway


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            while data := connection.recv(1024):
                connection.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_relay_pipes_both_ways_and_passes_the_end_of_stream() -> None:
    server, port = _echo_server()
    relay = Relay("127.0.0.1", port)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as connection:
            connection.sendall(b"ping")
            assert connection.recv(1024) == b"PING"
            connection.shutdown(socket.SHUT_WR)
            assert connection.recv(1024) == b""  # the server's close came back through
    finally:
        relay.close()
        server.close()


def test_ipv4_gateway_of_a_dual_stack_network() -> None:
    ipv6 = {"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"}
    assert ipv4_gateway([ipv6, {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]) == (
        "172.18.0.1"
    )
    assert ipv4_gateway([ipv6, {"Subnet": "172.19.0.0/16"}]) == "172.19.0.1"
