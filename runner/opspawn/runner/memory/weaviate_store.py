"""The memory store in Weaviate (weaviate-client v4, REST and gRPC).

One collection (spec.memory.longTerm.collection) holds the memories of every namespace, one
tenant per namespace (multi-tenancy). The runner connects with its namespace's API key, whose
role (provisioned by the operator, `opspawn.operator.weaviate_admin`) may only create, read,
update and delete objects of that namespace's tenant: Weaviate itself refuses every other
tenant, collection, schema change, user and role. The operator also creates the collection,
the tenant and the named vector of the task's embedder before the runner starts, so the
runner needs no schema rights; a missing one shows as a refused operation.

Vectors are provided by the runner (no vectorizer module): each embedder has a named vector
of its own and a search only looks in its own. Similarity is cosine: a vector index with
cosine distance, similarity = 1 - distance. Properties: `text`, and the provenance
`namespace`, `taskUid`, `taskName`, `createdAt`, `expiresAt` (null for memories that do not
expire).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateBaseError

from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.runner.memory.store import Memory, MemoryStoreError, RecalledMemory

INIT_TIMEOUT_SECONDS = 3.0
CALL_TIMEOUT_SECONDS = 20.0

T = TypeVar("T")


class WeaviateMemoryStore:
    """`MemoryStore` over one Weaviate collection and one named vector (the embedder's)."""

    def __init__(self, client: weaviate.WeaviateAsyncClient, collection: str, space: str) -> None:
        self._client = client
        self._name = collection
        self._space = space

    @classmethod
    async def connect(
        cls, address: WeaviateAddress, api_key: str, collection: str, space: str
    ) -> WeaviateMemoryStore:
        """Connect with the namespace's `api_key`."""
        # skip_init_checks: no gRPC ping (the first search finds out) and no PyPI version
        # lookup, which a runner in a cluster without internet must not attempt.
        client = weaviate.use_async_with_custom(
            http_host=address.http_host,
            http_port=address.http_port,
            http_secure=address.secure,
            grpc_host=address.grpc_host,
            grpc_port=address.grpc_port,
            grpc_secure=address.secure,
            auth_credentials=Auth.api_key(api_key),
            additional_config=AdditionalConfig(
                timeout=Timeout(
                    init=INIT_TIMEOUT_SECONDS,
                    query=CALL_TIMEOUT_SECONDS,
                    insert=CALL_TIMEOUT_SECONDS,
                )
            ),
            skip_init_checks=True,
        )
        try:
            await _guarded("connect to Weaviate", client.connect())
        except BaseException:
            await client.close()
            raise
        return cls(client, collection, space)

    def _tenant(self, namespace: str) -> Any:
        """The collection as seen by `namespace`'s tenant."""
        return self._client.collections.use(self._name).with_tenant(namespace)

    async def add(self, memory: Memory, vector: Sequence[float]) -> str:
        uuid = await _guarded(
            "store the memory",
            self._tenant(memory.namespace).data.insert(
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
        tenant = self._tenant(namespace)
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
        tenant = self._tenant(namespace)
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


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
