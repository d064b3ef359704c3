"""Each namespace's credential for long-term memory: provisioned in Weaviate with the operator's
root key, handed to the namespace's runners in a Secret.

Before a task with long-term memory is launched, `MemoryAccess.prepare` makes sure that
Weaviate has the task's collection, vector space and the namespace's tenant, and a user and role
of the namespace that may touch that tenant's objects only (`weaviate_admin`); and that the
namespace's Secret `opspawn-memory` holds that user's API key under `api-key`, which runner
Pods read with a secretKeyRef (`runner_job`). A runner therefore holds its own namespace's
credential and nothing more, and Weaviate refuses everything else it tries.

Restart-safe: Weaviate never shows a key again after it issued it, so the Secret is where the
key lives. A restarted operator reads the Secret and asks Weaviate whose key it is; when the
Secret is gone, or holds anything but that namespace's valid key (a tenant may edit Secrets of
its namespace, which only ever harms that namespace), the operator restores the key it knows or,
not knowing one Weaviate accepts, rotates the user's key and writes the new one. What it has
provisioned is looked at again after `RECHECK_SECONDS`, so a user, role, tenant or collection
deleted in Weaviate meanwhile is made again. Keys are never logged or put in status or Events.

When a namespace has no tasks left, its user, role, tenants and memories stay: long-term
memory is meant to outlive tasks. Deleting the namespace deletes its Secret; its Weaviate user,
role and tenants are then removed by the platform team (docs/install.md says how).

A Weaviate outage or refusal, or an apiserver refusal of the Secret, is returned as a reason;
the task then runs without long-term memory (`MemoryAvailable=False`) or fails with
`MemoryUnavailable` if it requires memory, as when Weaviate is down at the runner's start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.api.memory_spaces import embedding_space
from opspawn.api.weaviate_address import MAX_API_KEY_CHARS, WeaviateAddress
from opspawn.operator import metrics
from opspawn.operator.runner_job import MEMORY_API_KEY_KEY, MEMORY_SECRET
from opspawn.operator.settings import OperatorSettings
from opspawn.operator.weaviate_admin import WeaviateAdmin, WeaviateAdminError

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 600.0
"""What was provisioned is looked at in Weaviate again after this long: someone may have
deleted a user, role, tenant or collection meanwhile, or Weaviate may have lost its data."""
SECRET_LABELS = {
    "app.kubernetes.io/name": "opspawn-memory",
    "app.kubernetes.io/managed-by": "opspawn",
}


class CredentialStore(Protocol):
    """Where each namespace's key is kept (`KubeCredentials`: the namespace's Secret)."""

    async def read(self, namespace: str) -> str | None: ...

    async def write(self, namespace: str, key: str) -> None: ...


class KubeCredentials:
    """The `opspawn-memory` Secret of each namespace."""

    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)

    async def read(self, namespace: str) -> str | None:
        """The stored key; None when there is no Secret or no plausible key in it."""
        with metrics.api_call("get", "secrets"):
            try:
                secret = await self._core.read_namespaced_secret(MEMORY_SECRET, namespace)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
        encoded = (secret.data or {}).get(MEMORY_API_KEY_KEY)
        if not encoded or len(encoded) > 2 * MAX_API_KEY_CHARS:
            return None
        try:
            key = base64.b64decode(encoded, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            return None
        plausible = 0 < len(key) <= MAX_API_KEY_CHARS and key.isprintable() and key.strip() == key
        return key if plausible else None

    async def write(self, namespace: str, key: str) -> None:
        """Create the Secret, or set its key when it exists."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": MEMORY_SECRET, "namespace": namespace, "labels": SECRET_LABELS},
            "stringData": {MEMORY_API_KEY_KEY: key},
        }
        with metrics.api_call("create", "secrets"):
            try:
                await self._core.create_namespaced_secret(namespace, body)
                return
            except ApiException as error:
                if error.status != 409:
                    raise
        patch = {"metadata": {"labels": SECRET_LABELS}, "stringData": {MEMORY_API_KEY_KEY: key}}
        with metrics.api_call("patch", "secrets"):
            await self._core.patch_namespaced_secret(MEMORY_SECRET, namespace, patch)


class MemoryAccess:
    """Provisions namespaces for long-term memory; one per operator, shared by the workers."""

    def __init__(
        self,
        admin: WeaviateAdmin,
        credentials: CredentialStore,
        embedding_models: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._credentials = credentials
        self._embedding_models = embedding_models
        self._clock = clock
        self._connected = False
        self._connecting = asyncio.Lock()
        self._keys: dict[str, tuple[str, float]] = {}
        """Keys known to be the namespace's (checked with Weaviate, or issued by it), and when."""
        self._granted: dict[tuple[str, str, str], float] = {}
        """When (namespace, collection, space) was seen to have its schema, tenant and role."""
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def prepare(self, namespace: str, spec: AgentTaskSpec) -> str | None:
        """Make the namespace ready for the task's long-term memory: None when it is (or the
        task uses none), else why not (never a key)."""
        long_term = spec.memory.long_term
        if not long_term.enabled or long_term.collection is None:
            return None
        provider = spec.model.provider.value
        space = embedding_space(provider, self._embedding_models.get(provider))
        try:
            await self.provision(namespace, long_term.collection, space)
        except WeaviateAdminError as error:
            return f"the operator could not provision this namespace's memory: {error}"
        except ApiException as error:
            return (
                f"the operator could not store this namespace's memory credential in Secret "
                f"{MEMORY_SECRET}: HTTP {error.status}"
            )
        return None

    async def provision(self, namespace: str, collection: str, space: str) -> None:
        """Weaviate has `collection` with `space` and the namespace's tenant, user and role,
        and the credential store the namespace's valid key. WeaviateAdminError or
        ApiException when Weaviate or the apiserver fails or refuses."""
        async with self._locks[namespace]:
            await self._grant(namespace, collection, space)
            await self._ensure_key(namespace)

    def _fresh(self, checked_at: float | None) -> bool:
        return checked_at is not None and self._clock() - checked_at < RECHECK_SECONDS

    async def _grant(self, namespace: str, collection: str, space: str) -> None:
        if self._fresh(self._granted.get((namespace, collection, space))):
            return
        async with self._connecting:
            if not self._connected:
                await self._admin.connect()
                self._connected = True
        await self._admin.ensure_collection(collection, space)
        await self._admin.ensure_tenant(collection, namespace)
        await self._admin.ensure_role(namespace, collection)
        self._granted[namespace, collection, space] = self._clock()

    async def _ensure_key(self, namespace: str) -> None:
        """The Secret holds the namespace's valid key: the stored one or the one the operator
        knows when Weaviate still accepts it, else a new one."""
        stored = await self._credentials.read(namespace)
        known, checked_at = self._keys.get(namespace, (None, None))
        if known is not None and self._fresh(checked_at):
            if stored != known:
                logger.warning("Secret %s/%s was changed; restoring it", namespace, MEMORY_SECRET)
                await self._credentials.write(namespace, known)
            return
        candidates = dict.fromkeys(key for key in (stored, known) if key is not None)
        for candidate in candidates:
            if await self._admin.key_is_namespace(candidate, namespace):
                key = candidate
                break
        else:
            key = await self._admin.issue_key(namespace)
            logger.info("issued the Weaviate key of namespace %s", namespace)
        if key != stored:
            await self._credentials.write(namespace, key)
        await self._admin.assign_role(namespace)
        self._keys[namespace] = (key, self._clock())

    async def close(self) -> None:
        if self._connected:
            await self._admin.close()


class AdminKeyError(Exception):
    """The root API key file cannot be read or holds no key (the message never quotes it)."""


def read_admin_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise AdminKeyError(f"cannot read {path} ({type(error).__name__})") from None
    if not key or len(key) > MAX_API_KEY_CHARS or not key.isprintable():
        raise AdminKeyError(f"{path} holds no API key")
    return key


def memory_access(settings: OperatorSettings, api: client.ApiClient) -> MemoryAccess | None:
    """The operator's `MemoryAccess` when it has a Weaviate (None otherwise); AdminKeyError
    when the root key file is unusable."""
    runner = settings.runner
    if runner.weaviate_url is None or settings.weaviate_api_key_file is None:
        return None
    address = WeaviateAddress.parse(runner.weaviate_url, runner.weaviate_grpc_address)
    admin = WeaviateAdmin(address, read_admin_key(settings.weaviate_api_key_file))
    return MemoryAccess(admin, KubeCredentials(api), runner.embedding_models)
