"""The operator's writes and point reads against the Kubernetes API, all async.

Watches belong to kopf; everything else the reconcile does goes through `KubeClient`, which
makes each call idempotent the way the lifecycle needs it: a create that meets an existing
object (409) adopts it only when the task controls it (see `ownership`), a delete of a missing
object (404) is done, and a delete names the uid it means, so it can never remove another
object that took the name. Every call is counted in the `opspawn_api_requests_total` metric.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import aiohttp
import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.api.agenttask import GROUP, KIND, PLURAL, VERSION, admitted_spec_digest
from opspawn.operator import metrics
from opspawn.operator.ownership import controlled_by_job, controlled_by_task, task_controller_uid
from opspawn.operator.runner_job import MANAGED_BY, SIGNING_KEY_KEY, SPEC_KEY, KubeObject

COMPONENT = "opspawn-operator"
FAILED_CREATE = "FailedCreate"
"""The reason of the Event the Job controller posts when it cannot create the Job's Pod."""

Item = TypeVar("Item")
"""What a LIST's bodies are converted to (the store's views)."""


class LaunchRefusedError(RuntimeError):
    """Creating a runner object cannot succeed by retrying: the task must say why."""

    reason = "LaunchRefused"

    def __init__(self, message: str, existing: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.existing_metadata: Mapping[str, Any] = (existing or {}).get("metadata") or {}
        """The metadata of the object in the way, when there is one (for the security event)."""


class OwnershipConflictError(LaunchRefusedError):
    """An object with the name the operator wants exists and is not controlled by the task."""

    reason = "NameConflict"


class RunnerSecretModifiedError(LaunchRefusedError):
    """The task's own per-task Secret no longer holds the spec the apiserver admitted."""

    reason = "RunnerSecretModified"


class ObjectRefusedError(LaunchRefusedError):
    """The apiserver refused the object as invalid (400/422): the same spec fails again."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.reason = f"{kind}Refused"


READ_BUFFER_BYTES = 2**21
"""As kubernetes_asyncio sets it: a watch event of a large object exceeds aiohttp's default."""


async def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from `kubeconfig`, else $KUBECONFIG / ~/.kube/config, else in-cluster."""
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return _without_environment_lookups(client.ApiClient(configuration))
        except config.ConfigException:
            pass
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return _without_environment_lookups(client.ApiClient(configuration))


def _without_environment_lookups(api: client.ApiClient) -> client.ApiClient:
    """The client with an HTTP session that does not trust the environment.

    kubernetes_asyncio's session does, so aiohttp looks up the netrc file and the proxy
    variables for every request, in a worker thread: 12% of the operator's CPU while
    launching 200 tasks at once. kopf's own session leaves them alone by default, and so does
    this one now (a proxy in the kubeconfig still applies: it is passed per request)."""
    rest = api.rest_client
    trusting = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=trusting.connector, trust_env=False, read_bufsize=READ_BUFFER_BYTES
    )
    trusting.detach()  # the connector now belongs to the new session
    return api


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the same configuration the reconcile's client uses, so both
    always talk to the same cluster as the same identity (refreshing a rotated token)."""
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)
    # kubernetes_asyncio's config loaders keep the token under "BearerToken" ("Bearer …").
    stored = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization")
    token = str(stored or "").removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class KubeClient:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._batch = client.BatchV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    def _plain(self, obj: Any) -> KubeObject:
        plain: KubeObject = self._api.sanitize_for_serialization(obj)
        return plain

    # ------------------------------------------------------------------ runner objects

    async def ensure_secret(self, secret: KubeObject) -> None:
        """Create the per-task Secret; an existing one is kept only when the task controls
        it and it still holds the admitted spec (else `LaunchRefusedError`)."""
        namespace = secret["metadata"]["namespace"]
        with metrics.api_call("create", "secrets"):
            try:
                await _unread(
                    self._core.create_namespaced_secret(namespace, secret, _preload_content=False)
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise _refused("Secret", error) from None
        with metrics.api_call("get", "secrets"):
            existing = await _read_json(
                self._core.read_namespaced_secret(
                    secret["metadata"]["name"], namespace, _preload_content=False
                )
            )
        _check_owner(existing, secret)
        if not _same_spec(existing, secret):
            meta = secret["metadata"]
            raise RunnerSecretModifiedError(
                f"the per-task Secret {namespace}/{meta['name']} no longer holds the spec this"
                " task was admitted with (it was edited); no runner was started with it",
                existing,
            )

    async def ensure_job(self, job: KubeObject) -> None:
        """Create the Job; an existing Job of that name is adopted only when the task controls
        it (else `OwnershipConflictError`)."""
        namespace = job["metadata"]["namespace"]
        with metrics.api_call("create", "jobs"):
            try:
                await _unread(
                    self._batch.create_namespaced_job(namespace, job, _preload_content=False)
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise _refused("Job", error) from None
        existing = await self.read_job(namespace, job["metadata"]["name"])
        if existing is not None:
            _check_owner(existing, job)

    async def read_job(self, namespace: str, name: str) -> KubeObject | None:
        with metrics.api_call("get", "jobs"):
            try:
                job: KubeObject = await _read_json(
                    self._batch.read_namespaced_job(name, namespace, _preload_content=False)
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
        return job

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete the Job of `uid` and, through the garbage collector, its Pods (which get
        SIGTERM). The uid is a precondition: another Job that took the name is never hit."""
        with metrics.api_call("delete", "jobs"):
            try:
                await self._batch.delete_namespaced_job(
                    name,
                    namespace,
                    body=client.V1DeleteOptions(
                        propagation_policy="Background",
                        preconditions=client.V1Preconditions(uid=uid),
                    ),
                )
            except ApiException as error:
                if error.status not in (404, 409):  # gone, or another Job has the name now
                    raise

    async def job_pods(self, namespace: str, job_uid: str) -> list[KubeObject]:
        """The Pods the Job of `job_uid` created (Pods only labelled to look so are left out)."""
        with metrics.api_call("list", "pods"):
            pods = await _read_json(
                self._core.list_namespaced_pod(
                    namespace,
                    label_selector=f"batch.kubernetes.io/controller-uid={job_uid}",
                    _preload_content=False,
                )
            )
        items: list[KubeObject] = pods.get("items") or []
        return [pod for pod in items if controlled_by_job(pod.get("metadata") or {}, job_uid)]

    async def pod_creation_failure(self, namespace: str, job_uid: str) -> str | None:
        """The message of the newest FailedCreate Event of the Job of `job_uid` (None without
        one): why the Job controller cannot create the runner Pod."""
        selector = f"involvedObject.uid={job_uid},reason={FAILED_CREATE}"
        with metrics.api_call("list", "events"):
            found = await _read_json(
                self._core.list_namespaced_event(
                    namespace, field_selector=selector, _preload_content=False
                )
            )
        events: list[KubeObject] = found.get("items") or []
        if not events:
            return None
        newest = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return str(newest.get("message") or FAILED_CREATE)

    async def task_signing_key(self, namespace: str, secret_name: str, uid: str) -> bytes | None:
        """The event-signing key in the per-task Secret of task `uid` (None when there is no
        such Secret, or the task does not control it)."""
        with metrics.api_call("get", "secrets"):
            try:
                secret = await self._core.read_namespaced_secret(secret_name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
        if task_controller_uid(self._plain(secret.metadata)) != uid:
            return None
        encoded = (secret.data or {}).get(SIGNING_KEY_KEY)
        return base64.b64decode(encoded).strip() if encoded else None

    async def secret_problem(self, namespace: str, name: str, key: str) -> str | None:
        """Why Secret `name` cannot provide `key` (None when it can); never reads values out."""
        with metrics.api_call("get", "secrets"):
            try:
                secret = await self._core.read_namespaced_secret(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return f"Secret {namespace}/{name} (spec.model.apiKeySecretRef) not found"
                raise
        if key not in (secret.data or {}):
            return f"Secret {namespace}/{name} has no key {key!r} (spec.model.apiKeySecretRef)"
        return None

    # ------------------------------------------------------------------ AgentTasks

    async def list_tasks(
        self, namespaces: tuple[str, ...], convert: Callable[[KubeObject], Item]
    ) -> list[Item]:
        """Every AgentTask in `namespaces` (empty: the whole cluster), read in pages, each
        body converted as its page arrives."""
        if not namespaces:
            return await self._pages(
                "agenttasks",
                partial(self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL),
                convert,
            )
        found: list[Item] = []
        for namespace in namespaces:
            found += await self._pages(
                "agenttasks",
                partial(
                    self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
                ),
                convert,
            )
        return found

    async def list_runner_jobs(
        self, namespaces: tuple[str, ...], convert: Callable[[KubeObject], Item]
    ) -> list[Item]:
        """Every Job the operator made in `namespaces` (empty: the whole cluster), converted."""
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
        if not namespaces:
            return await self._pages(
                "jobs",
                partial(self._batch.list_job_for_all_namespaces, label_selector=selector),
                convert,
            )
        found: list[Item] = []
        for namespace in namespaces:
            found += await self._pages(
                "jobs",
                partial(self._batch.list_namespaced_job, namespace, label_selector=selector),
                convert,
            )
        return found

    async def _pages(
        self,
        resource: str,
        fetch: Callable[..., Awaitable[Any]],
        convert: Callable[[KubeObject], Item],
    ) -> list[Item]:
        """All items of a LIST, 500 a page, parsed as plain JSON (no model objects: they are
        many) and converted page by page, so that only one page of bodies is ever held."""
        items: list[Item] = []
        token: str | None = None
        while True:
            page: dict[str, Any] = {"limit": 500, "_preload_content": False}
            if token:
                page["_continue"] = token
            with metrics.api_call("list", resource):
                response = await fetch(**page)
                if response.status >= 300:
                    raise ApiException(status=response.status, reason=response.reason)
                body = json.loads(await response.read())
            items += [convert(item) for item in body.get("items") or []]
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def patch_task_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> KubeObject | None:
        """Merge-patch the status subresource; the task as it is now (None when it is gone).
        With `resource_version`, only if the task is still at that version (else the
        apiserver answers 409 Conflict): for a patch computed from what that version held."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        with metrics.api_call("patch", "agenttasks/status"):
            try:
                patched: KubeObject = await _read_json(
                    self._custom.patch_namespaced_custom_object_status(
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        name,
                        body,
                        _content_type="application/merge-patch+json",
                        _preload_content=False,
                    )
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
        return patched

    async def delete_task(self, namespace: str, name: str, uid: str) -> None:
        """Delete the task (only the one with `uid`: a new task of the same name is spared)."""
        with metrics.api_call("delete", "agenttasks"):
            try:
                await self._custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
                )
            except ApiException as error:
                if error.status not in (404, 409):
                    raise

    async def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        warning: bool,
        time: str,
    ) -> None:
        """A core/v1 Event about the task (what `kubectl describe agenttask` shows)."""
        event = {
            "metadata": {"name": f"{name[:200]}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
        }
        with metrics.api_call("create", "events"):
            await _unread(
                self._core.create_namespaced_event(namespace, event, _preload_content=False)
            )


async def _response_body(call: Awaitable[Any]) -> bytes:
    """The body of a request made with `_preload_content=False`, which skips kubernetes model
    objects (milliseconds of CPU for a Job or a list of Pods, better left to the apiserver
    beside the operator); errors raise ApiException as they would with the models."""
    response = await call
    body: bytes = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body
        raise error
    return body


async def _unread(call: Awaitable[Any]) -> None:
    """Await a create whose response the operator does not use."""
    await _response_body(call)


async def _read_json(call: Awaitable[Any]) -> Any:
    """The response of a read as plain JSON."""
    return json.loads(await _response_body(call))


def _check_owner(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    meta = wanted["metadata"]
    have = existing.get("metadata") or {}
    if not controlled_by_task(have, meta["namespace"], task_controller_uid(meta)):
        raise OwnershipConflictError(
            f"{wanted.get('kind', 'object')} {meta['namespace']}/{meta['name']} exists and is not"
            " controlled by this task; delete it, or recreate the task under another name",
            existing,
        )


def _same_spec(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the Secret `existing` holds the spec `wanted` carries, up to the fields that
    may change after creation (suspend, cancel …): what a runner would read is what was
    admitted."""
    try:
        stored = json.loads(base64.b64decode((existing.get("data") or {})[SPEC_KEY]))
    except (KeyError, TypeError, ValueError, binascii.Error, RecursionError):
        return False
    admitted = json.loads(wanted["stringData"][SPEC_KEY])
    return isinstance(stored, dict) and admitted_spec_digest(stored) == admitted_spec_digest(
        admitted
    )


def _refused(kind: str, error: ApiException) -> Exception:
    """`ObjectRefusedError` for an invalid object (400, 422), else the error itself (retried).

    The apiserver's message names the field; for the Secret, which carries the spec and the
    signing key, only its field paths are kept, never a quoted value."""
    if error.status not in (400, 422):
        return error
    try:
        status = json.loads(error.body or b"{}")
    except (TypeError, ValueError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    if kind == "Secret":
        causes = (status.get("details") or {}).get("causes") or []
        fields = sorted({str(c.get("field")) for c in causes if c.get("field")})
        detail = f" ({', '.join(fields)})" if fields else ""
        why = status.get("reason") or "Invalid"
        return ObjectRefusedError(
            kind,
            f"the apiserver refused the per-task Secret{detail}: {why}"
            " (the spec is probably too large for a Secret)",
        )
    message = str(status.get("message") or error.reason or "invalid")
    return ObjectRefusedError(kind, f"the apiserver refused the runner Job: {message[:900]}")
