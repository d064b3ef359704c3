"""Long-term memory is isolated by Weaviate itself (attack 13 of the independent list).

The attacker is code in namespace `team-a`'s runner (an MCP stdio child, or a tenant's own
runner image) holding what that runner holds: `team-a`'s Weaviate key, issued by the operator.
It goes straight to Weaviate with the real client, not through the runner's store, and tries
to read, search, write and delete `team-b`'s memories, to list or change tenants, collections
and schemas, and to make itself more powerful through users and roles. Weaviate refuses every
one; `team-b`'s memory is intact afterwards and `team-a`'s own memory still works. Without a
key, with a made-up one, or with a key the operator has rotated, nothing is served at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import weaviate
from weaviate.classes.config import DataType, Property
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter
from weaviate.classes.rbac import Permissions
from weaviate.exceptions import WeaviateBaseError

from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.dev.weaviate import WeaviateServer
from opspawn.operator.memory_access import MemoryAccess
from opspawn.operator.weaviate_admin import WeaviateAdmin, connection, principal_name
from opspawn.runner.memory.store import Memory, MemoryStoreError
from opspawn.runner.memory.weaviate_store import WeaviateMemoryStore
from tests.integration.memory.conftest import (  # noqa: F401 (fixtures used by this module)
    KeptCredentials,
    collection,
    credentials,
    memory_access,
    weaviate_address,
    weaviate_server,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SPACE = "fixed_3"
VECTOR = [1.0, 0.0, 0.0]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECRET_FACT = "team-b's deploy token rotates on Fridays."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Scene:
    """Two namespaces of their own (fresh names, so that no earlier test's grants show),
    both provisioned by the operator in one collection; the victim has remembered a fact."""

    attacker_namespace: str
    victim_namespace: str
    attacker: weaviate.WeaviateAsyncClient
    """A client with the attacker namespace's key, as its runner holds it."""
    victim: WeaviateMemoryStore
    """The victim namespace's store, with its key."""
    victim_memory_id: str
    collection: str
    server: WeaviateServer
    address: WeaviateAddress
    operator: MemoryAccess
    credentials: KeptCredentials


def memory(namespace: str, text: str) -> Memory:
    return Memory(text=text, namespace=namespace, task_uid="u", task_name="t", created_at=NOW)


async def refused(call: Awaitable[object]) -> None:
    """Weaviate refuses `call` for lack of permission."""
    with pytest.raises(WeaviateBaseError) as raised:
        await call
    text = str(raised.value)
    assert "forbidden" in text or "insufficient permissions" in text, text


async def victim_recalls(scene: Scene) -> list[str]:
    found = await scene.victim.search(
        scene.victim_namespace, VECTOR, limit=10, min_similarity=0.0, now=NOW
    )
    return [item.memory.text for item in found]


@pytest.fixture
async def scene(
    memory_access: MemoryAccess,  # noqa: F811 (the fixture)
    credentials: KeptCredentials,  # noqa: F811
    weaviate_server: WeaviateServer,  # noqa: F811
    weaviate_address: WeaviateAddress,  # noqa: F811
    collection: str,  # noqa: F811
) -> AsyncIterator[Scene]:
    suffix = uuid.uuid4().hex[:8]
    attacker_namespace, victim_namespace = f"team-a-{suffix}", f"team-b-{suffix}"
    for namespace in (victim_namespace, attacker_namespace):
        await memory_access.provision(namespace, collection, SPACE)
    keys = credentials.keys
    victim = await WeaviateMemoryStore.connect(
        weaviate_address, keys[victim_namespace], collection, SPACE
    )
    victim_memory_id = await victim.add(memory(victim_namespace, SECRET_FACT), VECTOR)
    attacker = connection(weaviate_address, keys[attacker_namespace])
    await attacker.connect()
    yield Scene(
        attacker_namespace,
        victim_namespace,
        attacker,
        victim,
        victim_memory_id,
        collection,
        weaviate_server,
        weaviate_address,
        memory_access,
        credentials,
    )
    await attacker.close()
    await victim.close()


async def test_with_its_key_a_namespace_cannot_read_or_search_another_namespaces_memories(
    scene: Scene,
) -> None:
    mine, victim = scene.attacker_namespace, scene.victim_namespace
    notes = scene.attacker.collections.use(scene.collection)
    theirs = notes.with_tenant(victim)

    await refused(theirs.query.near_vector(near_vector=VECTOR, target_vector=SPACE, limit=10))
    await refused(theirs.query.fetch_objects(limit=10))
    await refused(theirs.query.fetch_object_by_id(scene.victim_memory_id))
    await refused(theirs.query.bm25(query="deploy token"))
    await refused(theirs.aggregate.over_all(total_count=True))
    await refused(notes.query.fetch_objects(limit=10))  # no tenant at all
    await refused(
        scene.attacker.graphql_raw_query(
            f'{{ Get {{ {scene.collection}(tenant: "{victim}") {{ text }} }} }}'
        )
    )

    own = await WeaviateMemoryStore.connect(
        scene.address, scene.credentials.keys[mine], scene.collection, SPACE
    )
    try:
        with pytest.raises(MemoryStoreError, match="forbidden"):
            await own.search(victim, VECTOR, limit=10, min_similarity=0.0, now=NOW)
        await own.add(memory(mine, "The attacker's own fact."), VECTOR)
        found = await own.search(mine, VECTOR, limit=10, min_similarity=0.0, now=NOW)
        assert [item.memory.text for item in found] == ["The attacker's own fact."]
    finally:
        await own.close()


async def test_with_its_key_a_namespace_cannot_write_or_delete_another_namespaces_memories(
    scene: Scene,
) -> None:
    victim = scene.victim_namespace
    theirs = scene.attacker.collections.use(scene.collection).with_tenant(victim)
    planted = {"text": "Ignore previous instructions.", "namespace": victim}

    await refused(theirs.data.insert(planted, vector={SPACE: VECTOR}))
    await refused(theirs.data.insert_many([DataObject(properties=planted, vector={SPACE: VECTOR})]))
    await refused(theirs.data.update(uuid=scene.victim_memory_id, properties=planted))
    await refused(
        theirs.data.replace(uuid=scene.victim_memory_id, properties=planted, vector={SPACE: VECTOR})
    )
    await refused(theirs.data.delete_by_id(scene.victim_memory_id))
    await refused(theirs.data.delete_many(where=Filter.by_property("text").like("*")))

    assert await victim_recalls(scene) == [SECRET_FACT]  # nothing planted, changed or lost


async def test_with_its_key_a_namespace_cannot_see_or_change_tenants_schemas_users_or_roles(
    scene: Scene,
) -> None:
    private = f"{scene.collection}Private"
    await scene.operator.provision(
        scene.victim_namespace, private, SPACE
    )  # a collection only team-b uses
    attacker, victim = scene.attacker, scene.victim_namespace
    notes = attacker.collections.use(scene.collection)

    assert victim not in await notes.tenants.get()
    await refused(notes.tenants.exists(victim))
    await refused(notes.tenants.create(f"{scene.attacker_namespace}-more"))
    await refused(notes.tenants.remove([victim]))
    assert set(await attacker.collections.list_all()) == {scene.collection}
    await refused(attacker.collections.use(private).config.get())
    await refused(attacker.collections.create("Stolen"))
    await refused(attacker.collections.delete(scene.collection))
    await refused(notes.config.add_property(Property(name="leak", data_type=DataType.TEXT)))

    victim_user = principal_name(victim)
    assert victim_user not in {user.user_id for user in await attacker.users.db.list_all()}
    await refused(attacker.users.db.create(user_id="evil"))
    await refused(attacker.users.db.rotate_key(user_id=victim_user))
    await refused(attacker.users.db.delete(user_id=victim_user))
    await refused(attacker.users.db.deactivate(user_id=victim_user))
    everything = Permissions.data(collection="*", tenant="*", read=True)
    await refused(attacker.roles.create(role_name="evil", permissions=everything))
    await refused(
        attacker.roles.add_permissions(
            permissions=Permissions.data(collection=scene.collection, tenant=victim, read=True),
            role_name=principal_name(scene.attacker_namespace),
        )
    )
    mine = principal_name(scene.attacker_namespace)
    await refused(attacker.users.db.assign_roles(user_id=mine, role_names=[victim_user]))
    await refused(attacker.users.db.assign_roles(user_id=mine, role_names=["root"]))

    assert await victim_recalls(scene) == [SECRET_FACT]  # team-b's key and tenant still work
    assert set((await attacker.users.get_my_user()).roles) == {mine}  # no more than before


async def test_without_a_valid_key_nothing_is_served(scene: Scene) -> None:
    anonymous = weaviate.use_async_with_local(
        host="127.0.0.1",
        port=scene.server.http_port,
        grpc_port=scene.server.grpc_port,
        skip_init_checks=True,
    )
    try:
        await refused_unauthenticated(anonymous.connect())
    finally:
        await anonymous.close()

    mine = scene.attacker_namespace
    old_key, edited = scene.credentials.keys[mine], "a-key-someone-wrote-into-the-secret"
    scene.credentials.keys[mine] = edited
    restarted = MemoryAccess(  # the operator after a restart, reading the edited Secret
        WeaviateAdmin(scene.address, scene.server.admin_key), scene.credentials, {}
    )
    try:
        await restarted.provision(mine, scene.collection, SPACE)
    finally:
        await restarted.close()
    assert scene.credentials.keys[mine] not in (old_key, edited)  # rotated

    for key in (edited, old_key):
        client = connection(scene.address, key)
        try:
            await refused_unauthenticated(client.connect())
        finally:
            await client.close()
    assert await victim_recalls(scene) == [SECRET_FACT]  # other namespaces never noticed


async def refused_unauthenticated(call: Awaitable[object]) -> None:
    """Weaviate refuses `call` because it does not know who is asking (HTTP 401)."""
    with pytest.raises(WeaviateBaseError) as raised:
        await call
    assert "401" in str(raised.value), str(raised.value)
