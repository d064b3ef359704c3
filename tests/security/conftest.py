"""Fixtures of the adversarial suite: tenants (users with the aggregated `edit` role in a
namespace of their own, reached through impersonation) beside the operator fixtures.

A tenant acts only through its own `kubectl` (`--as=<user>`), so every refusal a test sees is
the apiserver's RBAC or admission, never the test's good manners. The aggregated ClusterRoles
come from the generated install manifest (`manifests/install.yaml`), as a platform engineer
installs them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from opspawn.api.agenttask import GROUP, PLURAL, VERSION
from tests.conftest import Kubectl
from tests.integration.conftest import anyio_backend, nats_server  # noqa: F401 (fixtures)
from tests.integration.operator.conftest import (  # noqa: F401 (fixtures used by this suite)
    Tasks,
    agenttask,
    operator_kubeconfig_path,
    start_test_operator,
    tasks,
)
from tests.integration.operator.test_event_pipeline import pipeline  # noqa: F401 (fixture)

INSTALL_MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "install.yaml"
AGGREGATE_LABEL_PREFIX = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated_cluster_roles() -> list[dict[str, Any]]:
    """The ClusterRoles of the install manifest that aggregate into admin, edit and view."""
    documents = yaml.safe_load_all(INSTALL_MANIFEST.read_text())
    return [
        document
        for document in documents
        if document
        and document.get("kind") == "ClusterRole"
        and any(
            label.startswith(AGGREGATE_LABEL_PREFIX)
            for label in (document["metadata"].get("labels") or {})
        )
    ]


@pytest.fixture(scope="session")
def aggregated_roles(kube_api: client.ApiClient) -> None:
    """Install the chart's aggregated roles once per stack (idempotent)."""
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for role in aggregated_cluster_roles():
        try:
            rbac.create_cluster_role(role)
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise


@dataclass(frozen=True)
class Tenant:
    """A user with the built-in `edit` role (and what aggregates into it) in one namespace."""

    user: str
    namespace: str
    admin_kubectl: Kubectl

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl as this tenant, in its namespace unless `args` name another."""
        namespaced = any(a.startswith(("--namespace", "-n")) for a in args)
        extra = () if namespaced else ("--namespace", self.namespace)
        return self.admin_kubectl(*args, f"--as={self.user}", *extra, stdin=stdin)

    def apply(self, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))


def tenant_task(api: client.ApiClient, tenant: Tenant, name: str) -> dict[str, Any]:
    """The tenant's AgentTask `name`, read through the admin client."""
    task: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, tenant.namespace, PLURAL, name
    )
    return task


def finished_condition(api: client.ApiClient, tenant: Tenant, name: str) -> dict[str, Any] | None:
    """The task's Succeeded condition once it is True or False."""
    for condition in (tenant_task(api, tenant, name).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Succeeded" and condition["status"] != "Unknown":
            return dict(condition)
    return None


MakeTenant = Callable[[], Tenant]


@pytest.fixture
def make_tenant(
    kube_api: client.ApiClient, kubectl: Kubectl, aggregated_roles: None
) -> Iterator[MakeTenant]:
    """Make tenants: each a fresh namespace and a user bound to `edit` there."""
    core = client.CoreV1Api(kube_api)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    made: list[str] = []

    def make() -> Tenant:
        suffix = uuid.uuid4().hex[:8]
        namespace, user = f"tenant-{suffix}", f"user-{suffix}"
        core.create_namespace(
            {"metadata": {"name": namespace, "labels": {"opspawn.io/test": "true"}}}
        )
        made.append(namespace)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"{user}-edit"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        return Tenant(user=user, namespace=namespace, admin_kubectl=kubectl)

    yield make
    for namespace in made:
        core.delete_namespace(namespace)
