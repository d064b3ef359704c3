"""Fixtures of the long-term memory tests: one real Weaviate per pytest worker (session scope,
on free ports, data in a temp dir, stopped at the end) and a fresh collection per test, so
tests never see each other's memories. The runner-process fixtures of the runner-loop tests
and the operator fixtures of the operator tests are shared from there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from opspawn.dev.weaviate import WeaviateServer
from opspawn.runner.memory.endpoint import WeaviateAddress
from tests.integration.operator.conftest import (
    operator_kubeconfig_path,
    start_test_operator,
    tasks,
)
from tests.integration.runner_loop.conftest import start_runner

__all__ = ["operator_kubeconfig_path", "start_runner", "start_test_operator", "tasks"]

WEAVIATE_READY_SECONDS = 90.0


@pytest.fixture(scope="session")
def weaviate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateServer]:
    server = WeaviateServer(tmp_path_factory.mktemp("weaviate"))
    server.start(timeout=WEAVIATE_READY_SECONDS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def weaviate_address(weaviate_server: WeaviateServer) -> WeaviateAddress:
    return WeaviateAddress.parse(weaviate_server.url, weaviate_server.grpc_address)


@pytest.fixture
def collection() -> str:
    """A collection name no other test uses."""
    return f"Notes{uuid.uuid4().hex[:12]}"
