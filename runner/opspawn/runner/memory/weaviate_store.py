"""The memory store in Weaviate (weaviate-client v4, REST and gRPC).

One collection (spec.memory.longTerm.collection) holds the memories of every namespace, one
tenant per namespace (multi-tenancy), so a search can only ever see its own namespace. Vectors
are provided by the runner (no vectorizer module): each embedder has a named vector of its
own, added to the collection the first time a task uses that embedder, and a search only looks
in its own. Similarity is cosine: a vector index with cosine distance, similarity = 1 - distance.

Properties: `text`, and the provenance `namespace`, `taskUid`, `taskName`, `createdAt`,
`expiresAt` (dates; `expiresAt` is null for memories that do not expire, and the null state is
indexed so searches can keep the unexpired ones server-side).

Several runners may open the same collection at once: creating the collection, adding a named
vector or a tenant that another runner created meanwhile counts as success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import weaviate
from weaviate.classes.config import (
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.init import AdditionalConfig, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateBaseError

from opspawn.runner.memory.endpoint import WeaviateAddress
from opspawn.runner.memory.store import Memory, MemoryStoreError, RecalledMemory

INIT_TIMEOUT_SECONDS = 3.0
CALL_TIMEOUT_SECONDS = 20.0

T = TypeVar("T")

PROPERTIES = (
    Property(name="text", data_type=DataType.TEXT),
    Property(name="namespace", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="taskUid", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="taskName", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="createdAt", data_type=DataType.DATE),
    Property(name="expiresAt", data_type=DataType.DATE),
)


class WeaviateMemoryStore:
    """`MemoryStore` over one Weaviate collection and one named vector (the embedder's)."""

    def __init__(self, client: weaviate.WeaviateAsyncClient, collection: str, space: str) -> None:
        self._client = client
        self._name = collection
        self._space = space
        self._tenants: set[str] = set()

    @classmethod
    async def connect(
        cls, address: WeaviateAddress, collection: str, space: str
    ) -> WeaviateMemoryStore:
        """Connect and make sure the collection and the vector `space` exist."""
        # skip_init_checks: no gRPC ping (the first search finds out) and no PyPI version
        # lookup, which a runner in a cluster without internet must not attempt.
        client = weaviate.use_async_with_custom(
            http_host=address.http_host,
            http_port=address.http_port,
            http_secure=address.secure,
            grpc_host=address.grpc_host,
            grpc_port=address.grpc_port,
            grpc_secure=address.secure,
            additional_config=AdditionalConfig(
                timeout=Timeout(
                    init=INIT_TIMEOUT_SECONDS,
                    query=CALL_TIMEOUT_SECONDS,
                    insert=CALL_TIMEOUT_SECONDS,
                )
            ),
            skip_init_checks=True,
        )
        store = cls(client, collection, space)
        try:
            await _guarded("connect to Weaviate", client.connect())
            await store._ensure_collection()
        except BaseException:
            await client.close()
            raise
        return store

    async def _ensure_collection(self) -> None:
        collections = self._client.collections
        if not await _guarded("look up the collection", collections.exists(self._name)):
            await _tolerating_race(
                "create the collection",
                collections.create(
                    self._name,
                    properties=list(PROPERTIES),
                    vector_config=[self._vector_config()],
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                ),
                done=lambda: collections.exists(self._name),
            )
        collection = collections.use(self._name)
        config = await _guarded("read the collection's configuration", collection.config.get())
        if not config.multi_tenancy_config.enabled:
            raise MemoryStoreError(
                f"collection {self._name} exists without multi-tenancy: it cannot keep "
                "namespaces apart; use another collection"
            )
        if self._space not in (config.vector_config or {}):
            await _tolerating_race(
                f"add the vector {self._space} to the collection",
                collection.config.add_vector(vector_config=self._vector_config()),
                done=self._has_space,
            )

    def _vector_config(self) -> Any:
        return Configure.Vectors.self_provided(
            name=self._space,
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
        )

    async def _has_space(self) -> bool:
        config = await self._client.collections.use(self._name).config.get()
        return self._space in (config.vector_config or {})

    async def _tenant(self, namespace: str) -> Any:
        """The collection as seen by `namespace`'s tenant, which is created when missing."""
        collection = self._client.collections.use(self._name)
        if namespace not in self._tenants:
            tenants = collection.tenants
            if not await _guarded("look up the tenant", tenants.exists(namespace)):
                await _tolerating_race(
                    "create the tenant",
                    tenants.create(Tenant(name=namespace)),
                    done=lambda: tenants.exists(namespace),
                )
            self._tenants.add(namespace)
        return collection.with_tenant(namespace)

    async def add(self, memory: Memory, vector: Sequence[float]) -> str:
        tenant = await self._tenant(memory.namespace)
        uuid = await _guarded(
            "store the memory",
            tenant.data.insert(
                properties={
                    "text": memory.text,
                    "namespace": memory.namespace,
                    "taskUid": memory.task_uid,
                    "taskName": memory.task_name,
                    "createdAt": memory.created_at,
                    "expiresAt": memory.expires_at,
                },
                vector={self._space: list(vector)},
            ),
        )
        return str(uuid)

    async def search(
        self,
        namespace: str,
        vector: Sequence[float],
        *,
        limit: int,
        min_similarity: float,
        now: datetime,
    ) -> list[RecalledMemory]:
        tenant = await self._tenant(namespace)
        response = await _guarded(
            "search the memories",
            tenant.query.near_vector(
                near_vector=list(vector),
                target_vector=self._space,
                limit=limit,
                distance=1.0 - min_similarity,
                filters=_unexpired(now),
                return_metadata=MetadataQuery(distance=True),
            ),
        )
        found = []
        for item in response.objects:
            memory = _memory(item.properties)
            distance = item.metadata.distance if item.metadata.distance is not None else 1.0
            if not memory.expired(now):
                found.append(RecalledMemory(str(item.uuid), memory, 1.0 - distance))
        return found

    async def delete_expired(self, namespace: str, now: datetime) -> int:
        tenant = await self._tenant(namespace)
        result = await _guarded(
            "delete expired memories",
            tenant.data.delete_many(where=Filter.by_property("expiresAt").less_or_equal(now)),
        )
        return int(result.successful)

    async def close(self) -> None:
        await self._client.close()


def _unexpired(now: datetime) -> _Filters:
    expires = Filter.by_property("expiresAt")
    return expires.is_none(True) | expires.greater_than(now)


def _memory(properties: dict[str, Any]) -> Memory:
    return Memory(
        text=str(properties.get("text") or ""),
        namespace=str(properties.get("namespace") or ""),
        task_uid=str(properties.get("taskUid") or ""),
        task_name=str(properties.get("taskName") or ""),
        created_at=_aware(properties.get("createdAt")) or datetime.fromtimestamp(0, UTC),
        expires_at=_aware(properties.get("expiresAt")),
    )


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _guarded(what: str, call: Awaitable[T]) -> T:
    """Await `call`; any client or connection failure becomes a MemoryStoreError."""
    try:
        return await call
    except MemoryStoreError:
        raise
    except (WeaviateBaseError, OSError) as error:
        raise MemoryStoreError(f"cannot {what}: {_describe(error)}") from None


async def _tolerating_race(
    what: str, call: Awaitable[object], *, done: Callable[[], Awaitable[bool]]
) -> None:
    """Await a create `call`; a failure is fine when `done()` says another runner did it."""
    try:
        await _guarded(what, call)
    except MemoryStoreError:
        if not await _guarded(what, done()):
            raise


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
