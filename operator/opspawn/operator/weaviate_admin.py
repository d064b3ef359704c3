"""What the operator does in Weaviate with its root API key: memory collections, tenants, and one
user and role per namespace (weaviate-client v4, REST).

The runners never change a schema: the operator creates each collection a task names (with
multi-tenancy and the named vector of the task's embedder) and the namespace's tenant in it.
A namespace's role may create, read, update and delete objects in its own tenant of the
collections its tasks use, and nothing else: no schema, no tenant list, no other tenant or
collection, no users or roles. Weaviate's RBAC enforces that; the runner's choice of tenant
is no longer what keeps namespaces apart.

Every call is idempotent, so a restarted operator (or two reconciles of one namespace) only
finds what is there already. Failures become `WeaviateAdminError` with what was attempted and
the HTTP status or kind of error, never a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.rbac import Permissions
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from opspawn.api.weaviate_address import WeaviateAddress

T = TypeVar("T")

TIMEOUT_SECONDS = 10.0
NAME_PREFIX = "opspawn-memory-"
"""Of every namespace's Weaviate user and role: `opspawn-memory-<namespace>`."""

PROPERTIES = (
    Property(name="text", data_type=DataType.TEXT),
    Property(name="namespace", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="taskUid", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="taskName", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="createdAt", data_type=DataType.DATE),
    Property(name="expiresAt", data_type=DataType.DATE),
)
"""A memory's text and provenance (`opspawn.runner.memory.weaviate_store` writes them);
`expiresAt` is null for memories that never expire, and the null state is indexed so that
searches keep the unexpired ones server-side."""


class WeaviateAdminError(Exception):
    """Weaviate could not be reached or refused; the message says what was attempted."""


def principal_name(namespace: str) -> str:
    """The Weaviate user and role of `namespace` (a DNS label, so a valid Weaviate name)."""
    return f"{NAME_PREFIX}{namespace}"


def connection(address: WeaviateAddress, api_key: str) -> weaviate.WeaviateAsyncClient:
    """A client of `address` (not yet connected) that authenticates with `api_key`."""
    # skip_init_checks: no PyPI version lookup, which a cluster without internet refuses.
    return weaviate.use_async_with_custom(
        http_host=address.http_host,
        http_port=address.http_port,
        http_secure=address.secure,
        grpc_host=address.grpc_host,
        grpc_port=address.grpc_port,
        grpc_secure=address.secure,
        auth_credentials=Auth.api_key(api_key),
        additional_config=AdditionalConfig(
            timeout=Timeout(init=TIMEOUT_SECONDS, query=TIMEOUT_SECONDS)
        ),
        skip_init_checks=True,
    )


class WeaviateAdmin:
    """The operator's root connection to Weaviate."""

    def __init__(self, address: WeaviateAddress, admin_key: str) -> None:
        self._address = address
        self._client = connection(address, admin_key)

    async def connect(self) -> None:
        await _guarded("connect to Weaviate", self._client.connect())

    async def close(self) -> None:
        await self._client.close()

    async def ensure_collection(self, collection: str, space: str) -> None:
        """The memory collection `collection` with multi-tenancy and the named vector `space`."""
        collections = self._client.collections
        if not await _guarded("look up the collection", collections.exists(collection)):
            await _tolerating_conflict(
                "create the collection",
                collections.create(
                    collection,
                    properties=list(PROPERTIES),
                    vector_config=[_vector_config(space)],
                    # Runners may not create tenants; the operator does (`ensure_tenant`).
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=False, auto_tenant_activation=True
                    ),
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                ),
                done=lambda: collections.exists(collection),
            )
        handle = collections.use(collection)
        config = await _guarded("read the collection's configuration", handle.config.get())
        if not config.multi_tenancy_config.enabled:
            raise WeaviateAdminError(
                "the collection exists without multi-tenancy, so it cannot keep namespaces "
                "apart; use another collection"
            )
        if space not in (config.vector_config or {}):
            await _tolerating_conflict(
                "add the task's vector to the collection",
                handle.config.add_vector(vector_config=_vector_config(space)),
                done=lambda: self._has_vector(collection, space),
            )

    async def _has_vector(self, collection: str, space: str) -> bool:
        config = await self._client.collections.use(collection).config.get()
        return space in (config.vector_config or {})

    async def ensure_tenant(self, collection: str, namespace: str) -> None:
        tenants = self._client.collections.use(collection).tenants
        if not await _guarded("look up the namespace's tenant", tenants.exists(namespace)):
            await _tolerating_conflict(
                "create the namespace's tenant",
                tenants.create(Tenant(name=namespace)),
                done=lambda: tenants.exists(namespace),
            )

    async def ensure_role(self, namespace: str, collection: str) -> None:
        """The namespace's role, allowed its own tenant's objects in `collection` (added to
        the collections it had already)."""
        role = principal_name(namespace)
        permissions = tenant_data_permissions(collection, namespace)
        roles = self._client.roles
        if not await _guarded("look up the namespace's role", roles.exists(role)):
            await _tolerating_conflict(
                "create the namespace's role",
                roles.create(role_name=role, permissions=permissions),
                done=lambda: roles.exists(role),
            )
        await _guarded(
            "grant the namespace's role its tenant",
            roles.add_permissions(permissions=permissions, role_name=role),
        )

    async def issue_key(self, namespace: str) -> str:
        """A new API key of the namespace's user, created when missing (an existing user's old
        key stops working)."""
        user = principal_name(namespace)
        users = self._client.users.db
        if await _guarded("look up the namespace's user", users.get(user_id=user)) is None:
            return await _guarded("create the namespace's user", users.create(user_id=user))
        return await _guarded("rotate the namespace's key", users.rotate_key(user_id=user))

    async def assign_role(self, namespace: str) -> None:
        """Give the namespace's user the namespace's role (and no other)."""
        name = principal_name(namespace)
        await _guarded(
            "assign the namespace's role",
            self._client.users.db.assign_roles(user_id=name, role_names=[name]),
        )

    async def key_is_namespace(self, key: str, namespace: str) -> bool:
        """Whether `key` authenticates as the namespace's user (False when Weaviate refuses it;
        WeaviateAdminError when Weaviate cannot say)."""
        client = connection(self._address, key)
        try:
            await client.connect()
            own = await client.users.get_my_user()
        except UnexpectedStatusCodeError as error:
            if error.status_code in (401, 403):
                return False
            raise WeaviateAdminError(f"cannot check the stored key: {_describe(error)}") from None
        except (WeaviateBaseError, OSError) as error:
            raise WeaviateAdminError(f"cannot check the stored key: {_describe(error)}") from None
        finally:
            await client.close()
        return bool(own.user_id == principal_name(namespace))


def tenant_data_permissions(collection: str, namespace: str) -> list[Any]:
    """Objects of the namespace's tenant in `collection` (create, read, update, delete), and
    the collection's configuration, without which Weaviate refuses a filtered search. The
    configuration is the schema every namespace shares; its tenants and their objects are
    not part of it."""
    return [
        *Permissions.data(
            collection=collection,
            tenant=namespace,
            create=True,
            read=True,
            update=True,
            delete=True,
        ),
        *Permissions.collections(collection=collection, read_config=True),
    ]


def _vector_config(space: str) -> Any:
    return Configure.Vectors.self_provided(
        name=space,
        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
    )


async def _guarded(what: str, call: Awaitable[T]) -> T:
    """Await `call`; any client or connection failure becomes a WeaviateAdminError."""
    try:
        return await call
    except WeaviateAdminError:
        raise
    except (WeaviateBaseError, OSError) as error:
        raise WeaviateAdminError(f"cannot {what}: {_describe(error)}") from None


async def _tolerating_conflict(
    what: str, call: Awaitable[object], *, done: Callable[[], Awaitable[bool]]
) -> None:
    """Await a create `call`; a failure is fine when `done()` says it exists now (created by
    a reconcile of the same namespace meanwhile)."""
    try:
        await _guarded(what, call)
    except WeaviateAdminError:
        if not await _guarded(what, done()):
            raise


def _describe(error: BaseException) -> str:
    """The kind of failure and Weaviate's HTTP status; never the response (or a key)."""
    if isinstance(error, UnexpectedStatusCodeError):
        return f"HTTP {error.status_code}"
    return type(error).__name__
