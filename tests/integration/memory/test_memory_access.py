"""The operator's provisioning against a real Weaviate, over time: an edited credential is put
back without rotating the key (runners that hold it keep working), and what someone deleted in
Weaviate (the namespace's user, role and tenant) is made again once the operator looks again,
with a new key that works. The clock is injected instead of waiting ten minutes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.dev.weaviate import WeaviateServer
from opspawn.operator.memory_access import RECHECK_SECONDS, MemoryAccess
from opspawn.operator.weaviate_admin import WeaviateAdmin, connection, principal_name
from opspawn.runner.memory.store import Memory
from opspawn.runner.memory.weaviate_store import WeaviateMemoryStore
from tests.integration.memory.conftest import KeptCredentials

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SPACE = "fixed_3"
VECTOR = [1.0, 0.0, 0.0]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def operator(
    weaviate_server: WeaviateServer, weaviate_address: WeaviateAddress
) -> AsyncIterator[tuple[MemoryAccess, KeptCredentials, Clock]]:
    credentials, clock = KeptCredentials(), Clock()
    admin = WeaviateAdmin(weaviate_address, weaviate_server.admin_key)
    access = MemoryAccess(admin, credentials, {}, clock=clock)
    yield access, credentials, clock
    await access.close()


async def remembers(
    address: WeaviateAddress, key: str, collection: str, namespace: str, text: str
) -> list[str]:
    """What `namespace` recalls after remembering `text` with `key`, as its runner would."""
    store = await WeaviateMemoryStore.connect(address, key, collection, SPACE)
    try:
        memory = Memory(text=text, namespace=namespace, task_uid="u", task_name="t", created_at=NOW)
        await store.add(memory, VECTOR)
        found = await store.search(namespace, VECTOR, limit=10, min_similarity=0.0, now=NOW)
        return sorted(item.memory.text for item in found)
    finally:
        await store.close()


async def test_an_edited_credential_is_restored_without_rotating_the_key(
    operator: tuple[MemoryAccess, KeptCredentials, Clock],
    weaviate_address: WeaviateAddress,
    collection: str,
) -> None:
    access, credentials, _ = operator
    namespace = f"edited-{collection.lower()}"
    await access.provision(namespace, collection, SPACE)
    key = credentials.keys[namespace]
    credentials.keys[namespace] = "edited by the tenant"

    await access.provision(namespace, collection, SPACE)

    assert credentials.keys[namespace] == key
    assert await remembers(weaviate_address, key, collection, namespace, "kept") == ["kept"]


async def test_what_was_deleted_in_weaviate_is_made_again_once_the_operator_looks_again(
    operator: tuple[MemoryAccess, KeptCredentials, Clock],
    weaviate_server: WeaviateServer,
    weaviate_address: WeaviateAddress,
    collection: str,
) -> None:
    access, credentials, clock = operator
    namespace = f"deleted-{collection.lower()}"
    await access.provision(namespace, collection, SPACE)
    old_key = credentials.keys[namespace]
    root = connection(weaviate_address, weaviate_server.admin_key)
    await root.connect()
    try:
        await root.users.db.delete(user_id=principal_name(namespace))
        await root.roles.delete(principal_name(namespace))
        await root.collections.use(collection).tenants.remove([namespace])
    finally:
        await root.close()

    clock.now = RECHECK_SECONDS - 1
    await access.provision(namespace, collection, SPACE)
    assert credentials.keys[namespace] == old_key  # not looked at yet

    clock.now = RECHECK_SECONDS
    await access.provision(namespace, collection, SPACE)
    new_key = credentials.keys[namespace]
    assert new_key != old_key
    assert await remembers(weaviate_address, new_key, collection, namespace, "again") == ["again"]
