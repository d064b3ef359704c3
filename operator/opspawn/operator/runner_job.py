"""The objects the operator creates for one attempt of an AgentTask: a per-task Secret and a Job.

The runner takes all of its input from the environment (see `opspawn.runner.main`). User text
(the spec, with its goal and context) reaches it only through the per-task Secret referenced
with `valueFrom`, never as an env `value`, `command` or `args`, where Kubernetes expands
`$(VAR)`; the few literal values the operator sets (names, URLs, the user's extra env) have
every `$` escaped, so a `$(OPSPAWN_MODEL_API_KEY)` anywhere stays literal text.

Names are deterministic, so a restarted operator finds (or gets a 409 for) the Job it already
created instead of making a second one. The Pod meets the Pod Security "restricted" profile
with a read-only root filesystem and a writable emptyDir at /tmp (the image's HOME).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opspawn.api.agenttask import API_VERSION, KIND, AgentTaskSpec, admitted_spec_digest
from opspawn.operator.nats_auth import NatsIssuer, runner_credential_lifetime

KubeObject = dict[str, Any]

SPEC_KEY = "spec.json"
SIGNING_KEY_KEY = "signing-key"
NATS_CREDENTIALS_KEY = "nats-credentials"
CONTAINER_NAME = "runner"
MANAGED_BY = "opspawn"
TASK_UID_LABEL = "opspawn.io/task-uid"
TASK_NAME_LABEL = "opspawn.io/task-name"
ATTEMPT_LABEL = "opspawn.io/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MEMORY_SECRET = "opspawn-memory"  # noqa: S105 (a Secret's name, not a secret)
"""The Secret of a namespace that holds its Weaviate API key (`memory_access` writes it)."""
MEMORY_API_KEY_KEY = "api-key"
RUNNER_UID = 65532
TMP_VOLUME = "tmp"
TMP_MOUNT_PATH = "/tmp"  # noqa: S108 (a path inside the runner container, not on this host)
TMP_SIZE_LIMIT = "1Gi"
"""The runner's /tmp (an emptyDir): the root filesystem is read-only and the image's HOME is
/tmp, so temporary files, caches and MCP stdio servers' files go there."""

_NAME_LIMIT = 63


@dataclass(frozen=True)
class RunnerSettings:
    """How the operator builds runner Jobs (operator configuration, not user input)."""

    image: str
    nats_url: str
    command: tuple[str, ...] = ("opspawn", "runner")
    model_base_urls: Mapping[str, str] = field(default_factory=dict)
    """Provider → endpoint that replaces the provider's own (dev stack: the mock model)."""
    termination_grace_seconds: int = 30
    deadline_grace_seconds: int = 30
    """The Job's activeDeadlineSeconds is the task's timeout plus this: the runner stops itself
    at the timeout (exit TimedOut) and gets this long to flush its events before the Job ends
    it."""
    weaviate_url: str | None = None
    """Long-term memory's Weaviate (REST URL), given to runners of tasks that enable it."""
    weaviate_grpc_address: str | None = None
    """Weaviate's gRPC host:port (default: the URL's host, port 50051)."""
    embedding_models: Mapping[str, str] = field(default_factory=dict)
    """Provider → embedding model for long-term memory; providers without one use the
    runner's offline embedder."""
    nats_issuer: NatsIssuer | None = None
    """Mints each task's NATS user (None: a NATS without auth, runners get no credentials)."""


def escape_expansion(text: str) -> str:
    """Make `text` literal in an env value, command or args: `$` becomes `$$`."""
    return text.replace("$", "$$")


def _bounded(name: str, suffix: str) -> str:
    """`name-suffix` within 63 characters, shortening `name` (never the suffix)."""
    room = _NAME_LIMIT - len(suffix) - 1
    return f"{name[:room].rstrip('-.')}-{suffix}"


def task_secret_name(task_name: str, task_uid: str) -> str:
    return _bounded(task_name, f"{task_uid[:8]}-runner")


def job_name(task_name: str, task_uid: str, attempt: int) -> str:
    """Deterministic per task and attempt, unique even when long names are cut."""
    digest = hashlib.sha256(f"{task_uid}/{attempt}".encode()).hexdigest()[:6]
    return _bounded(task_name, f"{digest}-{attempt}")


def _metadata(task: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = task["metadata"]
    return str(meta["name"]), str(meta["namespace"]), str(meta["uid"])


def _owner_reference(task: Mapping[str, Any]) -> KubeObject:
    name, _, uid = _metadata(task)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(task: Mapping[str, Any]) -> dict[str, str]:
    name, _, uid = _metadata(task)
    return {
        "app.kubernetes.io/name": "opspawn-runner",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TASK_NAME_LABEL: name,
        TASK_UID_LABEL: uid,
    }


def _runner_nats_credentials(task: Mapping[str, Any], settings: RunnerSettings) -> str | None:
    """The task's NATS user, valid past its last attempt's deadline (None without auth)."""
    if settings.nats_issuer is None:
        return None
    _, namespace, uid = _metadata(task)
    spec = AgentTaskSpec.model_validate(task["spec"])
    lifetime = runner_credential_lifetime(
        spec.limits.timeout_seconds,
        settings.deadline_grace_seconds,
        spec.retry.limit,
        spec.retry.backoff.max_seconds,
    )
    return settings.nats_issuer.runner_credentials(namespace, uid, time.time() + lifetime)


def build_task_secret(
    task: Mapping[str, Any], signing_key: str, settings: RunnerSettings | None = None
) -> KubeObject:
    """The per-task Secret: the spec (user text), the event-signing key and, with NATS auth,
    the task's NATS credentials. It serves every attempt of the task."""
    name, namespace, uid = _metadata(task)
    data = {
        SPEC_KEY: json.dumps(task["spec"], separators=(",", ":"), ensure_ascii=False),
        SIGNING_KEY_KEY: signing_key,
    }
    credentials = _runner_nats_credentials(task, settings) if settings else None
    if credentials is not None:
        data[NATS_CREDENTIALS_KEY] = credentials
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": task_secret_name(name, uid),
            "namespace": namespace,
            "labels": _labels(task),
            "ownerReferences": [_owner_reference(task)],
        },
        "stringData": data,
    }


def _secret_env(name: str, secret: str, key: str) -> KubeObject:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _literal_env(name: str, value: str) -> KubeObject:
    return {"name": name, "value": escape_expansion(value)}


def _environment(
    task: Mapping[str, Any], spec: AgentTaskSpec, attempt: int, settings: RunnerSettings
) -> list[KubeObject]:
    name, namespace, uid = _metadata(task)
    secret = task_secret_name(name, uid)
    environment = [
        _secret_env("OPSPAWN_TASK_SPEC", secret, SPEC_KEY),
        _secret_env("OPSPAWN_SIGNING_KEY", secret, SIGNING_KEY_KEY),
        _literal_env("OPSPAWN_TASK_UID", uid),
        _literal_env("OPSPAWN_TASK_NAME", name),
        _literal_env("OPSPAWN_TASK_NAMESPACE", namespace),
        _literal_env("OPSPAWN_ATTEMPT", str(attempt)),
        _literal_env("OPSPAWN_TASK_SPEC_DIGEST", admitted_spec_digest(task["spec"])),
        _literal_env("OPSPAWN_NATS_URL", settings.nats_url),
        *(
            [_secret_env("OPSPAWN_NATS_CREDENTIALS", secret, NATS_CREDENTIALS_KEY)]
            if settings.nats_issuer is not None
            else []
        ),
        {"name": "OPSPAWN_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    reference = spec.model.api_key_secret_ref
    if reference is not None:
        environment.append(_secret_env("OPSPAWN_MODEL_API_KEY", reference.name, reference.key))
    base_url = settings.model_base_urls.get(spec.model.provider.value)
    if base_url is not None:
        environment.append(_literal_env("OPSPAWN_MODEL_BASE_URL", base_url))
    environment += _memory_environment(spec, settings)
    for variable in spec.runner.env if spec.runner and spec.runner.env else []:
        environment.append(_literal_env(variable.name, variable.value))
    return environment


def _memory_environment(spec: AgentTaskSpec, settings: RunnerSettings) -> list[KubeObject]:
    """Where long-term memory is and the namespace's key there, for a task that enables it
    (nothing otherwise).

    The key comes from the namespace's Secret, which the operator provisions before launching
    (`memory_access`). The reference is optional: when provisioning failed and the Secret does
    not exist, the Pod still starts and the runner reports memory as unavailable."""
    if not spec.memory.long_term.enabled:
        return []
    values = {
        "OPSPAWN_WEAVIATE_URL": settings.weaviate_url,
        "OPSPAWN_WEAVIATE_GRPC_ADDRESS": settings.weaviate_grpc_address,
        "OPSPAWN_EMBEDDING_MODEL": settings.embedding_models.get(spec.model.provider.value),
    }
    environment = [_literal_env(name, value) for name, value in values.items() if value]
    if settings.weaviate_url:
        key = _secret_env("OPSPAWN_WEAVIATE_API_KEY", MEMORY_SECRET, MEMORY_API_KEY_KEY)
        key["valueFrom"]["secretKeyRef"]["optional"] = True
        environment.append(key)
    return environment


def _restricted_container_security() -> KubeObject:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_runner_job(task: Mapping[str, Any], attempt: int, settings: RunnerSettings) -> KubeObject:
    """The runner Job of `attempt` (from 1) for `task` (an AgentTask object as served)."""
    spec = AgentTaskSpec.model_validate(task["spec"])
    name, namespace, uid = _metadata(task)
    runner = spec.runner
    labels = {**_labels(task), ATTEMPT_LABEL: str(attempt)}
    if spec.queue is not None:
        labels[KUEUE_QUEUE_LABEL] = spec.queue
    container: KubeObject = {
        "name": CONTAINER_NAME,
        "image": runner.image if runner and runner.image else settings.image,
        "command": [escape_expansion(part) for part in settings.command],
        "env": _environment(task, spec, attempt, settings),
        "securityContext": _restricted_container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_MOUNT_PATH}],
    }
    if runner and runner.resources:
        container["resources"] = runner.resources.model_dump(exclude_none=True)
    pod_spec: KubeObject = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
    }
    if runner and runner.service_account_name:
        pod_spec["serviceAccountName"] = runner.service_account_name
    if runner and runner.node_selector:
        pod_spec["nodeSelector"] = dict(runner.node_selector)
    if runner and runner.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in runner.tolerations
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, uid, attempt),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [_owner_reference(task)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.limits.timeout_seconds + settings.deadline_grace_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
