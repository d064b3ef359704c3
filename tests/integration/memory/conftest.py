"""Fixtures of the long-term memory tests: one real Weaviate per pytest worker (session scope,
on free ports, data in a temp dir, stopped at the end; API keys and RBAC on, as in production),
a fresh collection per test, so tests never see each other's memories, and the operator's
provisioning (`MemoryAccess` with the root key) that gives each namespace its own key. The
runner-process fixtures of the runner-loop tests and the operator fixtures of the operator
tests are shared from there."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.dev.weaviate import WeaviateServer
from opspawn.operator.memory_access import MemoryAccess
from opspawn.operator.weaviate_admin import WeaviateAdmin
from tests.integration.operator.conftest import (
    operator_kubeconfig_path,
    start_test_operator,
    tasks,
)
from tests.integration.runner_loop.conftest import start_runner

__all__ = ["operator_kubeconfig_path", "start_runner", "start_test_operator", "tasks"]

WEAVIATE_READY_SECONDS = 90.0

Provision = Callable[[str, str], Awaitable[str]]
"""(namespace, vector space) -> the namespace's key, for the test's collection."""


class KeptCredentials:
    """The operator's credential store, kept in memory instead of in each namespace's Secret
    (the operator tests use the Secrets)."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    async def read(self, namespace: str) -> str | None:
        return self.keys.get(namespace)

    async def write(self, namespace: str, key: str) -> None:
        self.keys[namespace] = key


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


@pytest.fixture
def credentials() -> KeptCredentials:
    return KeptCredentials()


@pytest.fixture
async def memory_access(
    weaviate_server: WeaviateServer,
    weaviate_address: WeaviateAddress,
    credentials: KeptCredentials,
) -> AsyncIterator[MemoryAccess]:
    """The operator's provisioning, with Weaviate's root key."""
    access = MemoryAccess(
        WeaviateAdmin(weaviate_address, weaviate_server.admin_key), credentials, {}
    )
    yield access
    await access.close()


@pytest.fixture
def provision(
    memory_access: MemoryAccess, credentials: KeptCredentials, collection: str
) -> Provision:
    async def provision_(namespace: str, space: str) -> str:
        await memory_access.provision(namespace, collection, space)
        return credentials.keys[namespace]

    return provision_
