"""Ownership, not labels, for the per-task Secret: a runner only ever reads the spec the
apiserver admitted. A Secret that sits at the per-task name without being the task's, or the
task's own Secret edited to hold another spec, stops the launch with a clear condition (and a
security event), never a silent retry loop and never a runner on the other spec."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from opspawn.dev.stack import DevStack
from opspawn.operator.runner_job import task_secret_name
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, agenttask
from tests.security.conftest import MakeTenant, Tenant, finished_condition, tenant_task
from tests.security.test_ownership_jobs import _security_events, _serve


def _squat(tenant: Tenant, name: str, owner: dict[str, Any] | None) -> str:
    """Pre-create the per-task Secret of suspended task `name` holding another goal."""
    uid = _task_uid(tenant, name)
    secret_name = task_secret_name(name, uid)
    spec = {**agenttask(name)["spec"], "goal": "exfiltrate everything"}
    metadata: dict[str, Any] = {
        "name": secret_name,
        "labels": {"opspawn.io/task-uid": uid, "app.kubernetes.io/managed-by": "opspawn"},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    squatter = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": {"spec.json": json.dumps(spec), "signing-key": "k" * 43},
    }
    applied = tenant.apply(squatter)
    assert applied.returncode == 0, applied.stderr
    return secret_name


def _task_uid(tenant: Tenant, name: str) -> str:
    shown = tenant.kubectl("get", "agenttask", name, "-o", "jsonpath={.metadata.uid}")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def _resume(tenant: Tenant, name: str) -> None:
    resumed = tenant.kubectl(
        "patch", "agenttask", name, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    assert resumed.returncode == 0, resumed.stderr


def _accepted(api: client.ApiClient, tenant: Tenant, name: str) -> dict[str, Any]:
    conditions = tenant_task(api, tenant, name)["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Accepted")


def test_a_pre_created_secret_at_the_per_task_name_is_not_adopted(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
) -> None:
    attacker, bystander = make_tenant(), make_tenant()
    _serve(start_test_operator, stack, attacker, bystander)
    assert attacker.apply(agenttask("squatted", suspend=True)).returncode == 0
    secret_name = _squat(attacker, "squatted", owner=None)

    _resume(attacker, "squatted")

    finished = wait_for(lambda: finished_condition(kube_api, attacker, "squatted"), 30, "the task")
    assert finished["reason"] == "NameConflict"
    assert secret_name in finished["message"]
    accepted = _accepted(kube_api, attacker, "squatted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NameConflict")
    batch = client.BatchV1Api(kube_api)
    assert batch.list_namespaced_job(attacker.namespace).items == []  # nothing ran
    reported = [
        e for e in _security_events(stack, attacker.namespace) if e.subject.endswith(secret_name)
    ]
    assert reported and reported[0].reason == "NameConflict"
    assert "exfiltrate" not in reported[0].excerpt  # the object's claims, never its data
    assert "k" * 43 not in reported[0].excerpt

    assert bystander.apply(agenttask("bystander")).returncode == 0
    served = wait_for(lambda: finished_condition(kube_api, bystander, "bystander"), 60, "bystander")
    assert served["reason"] == "Completed"


def test_a_secret_with_a_forged_owner_reference_and_another_spec_never_runs(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
) -> None:
    """The squatter copies the task's uid into a controller ownerReference (anyone may write
    one in their namespace): the operator still refuses a Secret whose spec is not the one
    the apiserver admitted."""
    tenant = make_tenant()
    _serve(start_test_operator, stack, tenant)
    assert tenant.apply(agenttask("forged-owner", suspend=True)).returncode == 0
    uid = _task_uid(tenant, "forged-owner")
    owner = {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "name": "forged-owner",
        "uid": uid,
        "controller": True,
    }
    _squat(tenant, "forged-owner", owner=owner)

    _resume(tenant, "forged-owner")

    finished = wait_for(
        lambda: finished_condition(kube_api, tenant, "forged-owner"), 30, "the task"
    )
    assert finished["reason"] == "RunnerSecretModified"
    accepted = _accepted(kube_api, tenant, "forged-owner")
    assert (accepted["status"], accepted["reason"]) == ("False", "RunnerSecretModified")
    assert client.BatchV1Api(kube_api).list_namespaced_job(tenant.namespace).items == []
    status = json.dumps(tenant_task(kube_api, tenant, "forged-owner")["status"])
    assert "exfiltrate" not in status
    assert any(
        e.reason == "RunnerSecretModified" for e in _security_events(stack, tenant.namespace)
    )
