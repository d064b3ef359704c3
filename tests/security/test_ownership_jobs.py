"""Ownership, not labels: a Job (or Pod) that passes itself off as a task's runner is never
adopted, trusted or deleted, and ends as a security event; the task finishes by its own runner.

Each test is the attack of a tenant (an impersonated user with the aggregated `edit` role),
against the operator serving the attacker's and the victim's namespaces at once.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from opspawn.api.agenttask import API_VERSION
from opspawn.dev.stack import DevStack
from opspawn.operator.audit import AuditStore, SecurityEventRecord
from opspawn.operator.runner_job import job_name
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, agenttask
from tests.security.conftest import MakeTenant, Tenant, finished_condition, tenant_task


def _serve(start: StartOperator, stack: DevStack, *tenants: Tenant) -> None:
    assert stack.postgres is not None
    namespaces = [arg for tenant in tenants for arg in ("--namespace", tenant.namespace)]
    start(*namespaces, "--database-url", stack.postgres.url)


def _security_events(stack: DevStack, namespace: str) -> list[SecurityEventRecord]:
    assert stack.postgres is not None
    with AuditStore(stack.postgres.url) as audit:
        return audit.security_events(namespace=namespace)


GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"


def _deleters(stack: DevStack, namespace: str, name: str) -> set[str]:
    """Who deleted Jobs `namespace/name`, by the apiserver's audit log."""
    assert stack.control_plane is not None
    users = set()
    for line in stack.control_plane.audit_log_path.read_text().splitlines():
        entry = json.loads(line)
        target = entry.get("objectRef") or {}
        if (
            entry.get("verb") == "delete"
            and target.get("resource") == "jobs"
            and (target.get("namespace"), target.get("name")) == (namespace, name)
        ):
            users.add(str(entry["user"]["username"]))
    return users


def _forged_job(name: str, labels: dict[str, str], owner: dict[str, Any] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "runner", "image": "forged", "command": ["true"]}],
                }
            },
        },
    }


def _runner_labels(uid: str, name: str, attempt: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "opspawn",
        "opspawn.io/task-uid": uid,
        "opspawn.io/task-name": name,
        "opspawn.io/attempt": str(attempt),
    }


def _running(api: client.ApiClient, tenant: Tenant, name: str) -> dict[str, Any] | None:
    task = tenant_task(api, tenant, name)
    return task if (task.get("status") or {}).get("jobName") else None


def test_a_job_in_another_namespace_claiming_the_victims_task_is_ignored_and_reported(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
) -> None:
    attacker, victim = make_tenant(), make_tenant()
    _serve(start_test_operator, stack, attacker, victim)
    assert victim.apply(agenttask("victim", inputs={"FAKE_SLEEP": "6"})).returncode == 0
    task = wait_for(lambda: _running(kube_api, victim, "victim"), 30, "the victim's Job")
    uid = task["metadata"]["uid"]

    # A later attempt's Job, as the operator would make it, in the attacker's namespace: the
    # labels, a controller ownerReference to the victim's task, an attempt the victim lacks.
    owner = {
        "apiVersion": API_VERSION,
        "kind": "AgentTask",
        "name": "victim",
        "uid": uid,
        "controller": True,
    }
    forged = _forged_job("victim-forged-5", _runner_labels(uid, "victim", 5), owner)
    applied = attacker.apply(forged)
    assert applied.returncode == 0, applied.stderr

    reported = wait_for(
        lambda: [e for e in _security_events(stack, attacker.namespace) if e.task_uid == uid],
        30,
        "the forged Job to be reported",
    )
    assert reported[0].reason == "CrossNamespaceOwner"
    assert reported[0].subject == f"kubernetes:Job/{attacker.namespace}/victim-forged-5"

    finished = wait_for(lambda: finished_condition(kube_api, victim, "victim"), 60, "the victim")
    assert finished["reason"] == "Completed"
    status = tenant_task(kube_api, victim, "victim")["status"]
    assert status["attempt"] == 1  # the forged attempt 5 was never adopted
    assert len(status["attempts"]) == 1
    # The operator never deleted anything in the attacker's namespace with its rights (the
    # garbage collector may collect the Job: to Kubernetes the reference is to no owner).
    assert _deleters(stack, attacker.namespace, "victim-forged-5") <= {GARBAGE_COLLECTOR}


def test_a_job_labelled_as_a_tasks_runner_in_its_own_namespace_is_not_its_runner(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
) -> None:
    """A co-tenant of the namespace labels a Job of its own (that exits 0 at once) as the
    task's attempt 2: without the task's controller reference it neither finishes the task
    nor is deleted by the operator."""
    tenant, bystander = make_tenant(), make_tenant()
    _serve(start_test_operator, stack, tenant, bystander)
    assert tenant.apply(agenttask("real", inputs={"FAKE_SLEEP": "6"})).returncode == 0
    task = wait_for(lambda: _running(kube_api, tenant, "real"), 30, "the task's Job")
    uid = task["metadata"]["uid"]
    batch = client.BatchV1Api(kube_api)

    assert tenant.apply(_forged_job("forged", _runner_labels(uid, "real", 2), None)).returncode == 0
    wait_for(
        lambda: batch.read_namespaced_job("forged", tenant.namespace).status.succeeded,
        30,
        "the forged Job to succeed",
    )
    reported = wait_for(
        lambda: [e for e in _security_events(stack, tenant.namespace) if e.task_uid == uid],
        30,
        "the forged Job to be reported",
    )
    assert reported[0].reason == "ForgedRunnerJob"
    assert "secret" not in reported[0].excerpt.lower()

    finished = wait_for(lambda: finished_condition(kube_api, tenant, "real"), 60, "the task")
    assert finished["reason"] == "Completed"
    assert tenant_task(kube_api, tenant, "real")["status"]["attempt"] == 1
    assert batch.read_namespaced_job("forged", tenant.namespace).metadata.uid  # not deleted

    assert bystander.apply(agenttask("bystander")).returncode == 0
    served = wait_for(lambda: finished_condition(kube_api, bystander, "bystander"), 60, "bystander")
    assert served["reason"] == "Completed"


def test_a_job_squatting_the_name_of_the_next_attempt_fails_the_task_clearly(
    start_test_operator: StartOperator,
    make_tenant: MakeTenant,
    kube_api: client.ApiClient,
    stack: DevStack,
) -> None:
    """The Job name of attempt 1 is computable from the uid: a Job of the tenant's own sits
    there before the task is resumed. The task says so and stops; the squatter is untouched."""
    tenant = make_tenant()
    _serve(start_test_operator, stack, tenant)
    assert tenant.apply(agenttask("squatted", suspend=True)).returncode == 0
    uid = tenant_task(kube_api, tenant, "squatted")["metadata"]["uid"]
    name = job_name("squatted", uid, 1)
    squatter = _forged_job(name, {"app": "mine"}, None)
    squatter["spec"]["suspend"] = True
    assert tenant.apply(squatter).returncode == 0

    resumed = tenant.kubectl(
        "patch", "agenttask", "squatted", "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    assert resumed.returncode == 0, resumed.stderr

    finished = wait_for(
        lambda: finished_condition(kube_api, tenant, "squatted"), 30, "the task to end"
    )
    assert finished["reason"] == "NameConflict"
    assert name in finished["message"]
    accepted = next(
        c
        for c in tenant_task(kube_api, tenant, "squatted")["status"]["conditions"]
        if c["type"] == "Accepted"
    )
    assert (accepted["status"], accepted["reason"]) == ("False", "NameConflict")
    kept = client.BatchV1Api(kube_api).read_namespaced_job(name, tenant.namespace)
    assert kept.metadata.labels == {"app": "mine"}
    assert kept.spec.suspend is True
    assert any(e.reason == "NameConflict" for e in _security_events(stack, tenant.namespace))
