"""The namespace's memory Secret as an attack surface: a tenant can edit `opspawn-memory` in its
own namespace (the built-in `edit` role covers Secrets), and cannot read another namespace's.
Editing it harms only the tenant itself and only until its next launch: the operator puts its
namespace's key back, the tenant's memory works again, and another tenant's memory and key are
untouched throughout."""

from __future__ import annotations

import base64
import shlex
import uuid

from kubernetes import client

from opspawn.dev.operator_process import RUNNER_COMMAND
from opspawn.dev.stack import DevStack
from opspawn.dev.weaviate import WeaviateServer
from opspawn.operator.runner_job import MEMORY_API_KEY_KEY, MEMORY_SECRET
from tests.helpers import wait_for
from tests.integration.memory.conftest import weaviate_server  # noqa: F401 (the fixture)
from tests.integration.memory.test_operator_memory import (  # noqa: F401 (model_url: fixture)
    memory_task,
    model_url,
    weaviate_options,
)
from tests.integration.operator.conftest import StartOperator
from tests.security.conftest import MakeTenant, Tenant, tenant_task


def _memory_of(api: client.ApiClient, tenant: Tenant, name: str) -> dict[str, str]:
    """Create the memory task as the tenant; its MemoryAvailable condition once it finished."""
    applied = tenant.apply(memory_task(name, COLLECTION))
    assert applied.returncode == 0, applied.stderr

    def finished_with_memory() -> dict[str, str] | None:
        conditions = {
            c["type"]: c
            for c in (tenant_task(api, tenant, name).get("status") or {}).get("conditions") or []
        }
        succeeded, memory = conditions.get("Succeeded"), conditions.get("MemoryAvailable")
        if succeeded is None or succeeded["status"] == "Unknown" or memory is None:
            return None
        assert succeeded["status"] == "True", succeeded
        return dict(memory)

    return wait_for(finished_with_memory, 150, f"{tenant.namespace}/{name} to finish")


def _stored_key(api: client.ApiClient, namespace: str) -> str:
    secret = client.CoreV1Api(api).read_namespaced_secret(MEMORY_SECRET, namespace)
    return base64.b64decode(secret.data[MEMORY_API_KEY_KEY]).decode()


COLLECTION = f"Shared{uuid.uuid4().hex[:12]}"
"""One collection both tenants' tasks name: only the tenants differ."""


def test_a_tenant_who_rewrites_its_memory_secret_harms_only_itself_and_only_once(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
    *,
    weaviate_server: WeaviateServer,  # noqa: F811 (the fixture)
    model_url: str,  # noqa: F811 (the fixture)
) -> None:
    attacker, bystander = make_tenant(), make_tenant()
    assert stack.postgres is not None
    start_test_operator(
        *("--namespace", attacker.namespace, "--namespace", bystander.namespace),
        *("--database-url", stack.postgres.url),
        f"--model-base-url=openai-compatible={model_url}",
        *weaviate_options(weaviate_server),
        runner_command=shlex.join(RUNNER_COMMAND),
    )
    assert _memory_of(kube_api, attacker, "before")["reason"] == "MemoryAnswered"
    assert _memory_of(kube_api, bystander, "theirs")["reason"] == "MemoryAnswered"
    attacker_key, bystander_key = (
        _stored_key(kube_api, t.namespace) for t in (attacker, bystander)
    )

    stolen = attacker.kubectl(
        "get", "secret", MEMORY_SECRET, "--namespace", bystander.namespace, "-o", "yaml"
    )
    assert stolen.returncode != 0 and "forbidden" in stolen.stderr  # Kubernetes RBAC, not ours
    rewritten = attacker.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": MEMORY_SECRET},
            "stringData": {MEMORY_API_KEY_KEY: "x" * 5000},
        }
    )
    assert rewritten.returncode == 0, rewritten.stderr

    after = _memory_of(kube_api, attacker, "after")
    assert after["reason"] == "MemoryAnswered"  # the operator put the namespace's key back
    assert _stored_key(kube_api, attacker.namespace) == attacker_key
    assert _memory_of(kube_api, bystander, "still-theirs")["reason"] == "MemoryAnswered"
    assert _stored_key(kube_api, bystander.namespace) == bystander_key
