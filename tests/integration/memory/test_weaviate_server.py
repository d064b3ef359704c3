"""The dev/test Weaviate itself: nothing reserves a free port between the pick and the bind,
so a server that finds one of its ports taken starts again on new ones."""

from __future__ import annotations

import socket
from pathlib import Path

from opspawn.dev.ports import free_port
from opspawn.dev.weaviate import WeaviateServer
from tests.integration.memory.conftest import WEAVIATE_READY_SECONDS


def test_a_port_taken_before_weaviate_binds_it_is_picked_again(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        taken = free_port()
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        server = WeaviateServer(tmp_path, _cluster_ports={"RAFT_INTERNAL_RPC_PORT": taken})
        try:
            server.start(timeout=WEAVIATE_READY_SECONDS)

            assert server.ready()
            assert b"address already in use" in (tmp_path / "weaviate.log").read_bytes()
            assert taken not in server._cluster_ports.values()
        finally:
            server.stop()
