"""Rows of the independent attack list (tests/security/README.md) run as the attack: tenants
are impersonated users with the aggregated `edit` role, each in a namespace of its own, and the
operator serves all of them at once."""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client

from opspawn.api.agenttask import API_VERSION
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, agenttask
from tests.security.conftest import MakeTenant, Tenant, finished_condition, tenant_task


def _serve(start: StartOperator, *tenants: Tenant) -> None:
    start(*[arg for tenant in tenants for arg in ("--namespace", tenant.namespace)])


def test_a_job_forged_in_another_namespace_neither_finishes_nor_deletes_the_victims_task(
    start_test_operator: StartOperator, make_tenant: MakeTenant, kube_api: client.ApiClient
) -> None:
    attacker, victim = make_tenant(), make_tenant()
    _serve(start_test_operator, attacker, victim)
    created = victim.apply(agenttask("victim", inputs={"FAKE_SLEEP": "25"}))
    assert created.returncode == 0, created.stderr
    batch = client.BatchV1Api(kube_api)

    def victims_jobs() -> list[Any]:
        jobs = batch.list_namespaced_job(victim.namespace).items
        return [job for job in jobs if job.status and job.status.active]

    wait_for(victims_jobs, 30, "the victim's runner to start")
    task = wait_for(
        lambda: (
            (t := tenant_task(kube_api, victim, "victim")).get("status", {}).get("jobName") and t
        ),
        30,
        "the victim's status to name its Job",
    )
    uid, job_name = task["metadata"]["uid"], task["status"]["jobName"]

    # The attacker copies everything the operator would put on the victim's Job: the labels
    # the operator selects by, a controller ownerReference to the victim's task, even its name.
    forged = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "labels": {
                "app.kubernetes.io/managed-by": "opspawn",
                "opspawn.io/task-uid": uid,
                "opspawn.io/task-name": "victim",
                "opspawn.io/attempt": "1",
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "AgentTask",
                    "name": "victim",
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
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
    applied = attacker.apply(forged)
    assert applied.returncode == 0, applied.stderr

    def forged_job_done() -> str | None:
        """Succeeded, or gone: the garbage collector deletes a Job whose owner is in another
        namespace (it counts as absent), at a moment of its choosing."""
        try:
            job = batch.read_namespaced_job(job_name, attacker.namespace)
        except client.exceptions.ApiException as error:
            return "deleted" if error.status == 404 else None
        return "succeeded" if job.status and job.status.succeeded else None

    wait_for(forged_job_done, 30, "the forged Job to succeed or be collected")

    # The victim's task ends by its own runner only: still running after the forged Job
    # finished, then Completed on attempt 1, its own Job never deleted.
    assert finished_condition(kube_api, victim, "victim") is None
    assert [job.metadata.name for job in victims_jobs()] == [job_name]
    finished = wait_for(
        lambda: finished_condition(kube_api, victim, "victim"), 90, "the victim to finish"
    )
    assert finished["reason"] == "Completed"
    status = tenant_task(kube_api, victim, "victim")["status"]
    assert status["attempt"] == 1
    assert batch.read_namespaced_job(job_name, victim.namespace).metadata.uid
    # The attacker's Job is the garbage collector's to delete (an owner in another namespace
    # counts as absent); that the operator deleted nothing there is checked in the apiserver's
    # audit log by test_ownership_jobs.py.


def test_a_tenant_cannot_write_a_tasks_status(
    make_tenant: MakeTenant, kube_api: client.ApiClient
) -> None:
    tenant = make_tenant()
    assert tenant.apply(agenttask("mine")).returncode == 0

    patched = tenant.kubectl(
        "patch",
        "agenttask",
        "mine",
        "--subresource=status",
        "--type=merge",
        "--patch",
        json.dumps({"status": {"phase": "Succeeded", "usage": {"costUSD": 0}}}),
    )

    assert patched.returncode != 0
    assert "forbidden" in patched.stderr.lower()
    assert "phase" not in (tenant_task(kube_api, tenant, "mine").get("status") or {})


def test_garbage_in_kopf_annotations_ends_as_status_and_other_tenants_are_served(
    start_test_operator: StartOperator, make_tenant: MakeTenant, kube_api: client.ApiClient
) -> None:
    attacker, bystander = make_tenant(), make_tenant()
    _serve(start_test_operator, attacker, bystander)
    poisoned = agenttask("poisoned")
    poisoned["metadata"]["annotations"] = {
        "kopf.zalando.org/last-handled-configuration": "{not json",
        "kopf.zalando.org/reconcile": '{"started": "yesterday", "retries": "many"}',
        "kopf.zalando.org/touch-dummy": "x" * 100_000,
    }
    # `create`, not `apply`: apply would copy the annotations into its own and pass the cap.
    created = attacker.kubectl("create", "-f", "-", stdin=json.dumps(poisoned))
    assert created.returncode == 0, created.stderr

    finished = wait_for(
        lambda: finished_condition(kube_api, attacker, "poisoned"), 60, "the task to end"
    )
    assert finished["reason"] == "Completed"
    assert bystander.apply(agenttask("bystander")).returncode == 0
    finished = wait_for(
        lambda: finished_condition(kube_api, bystander, "bystander"), 60, "bystander"
    )
    assert finished["reason"] == "Completed"


def test_editing_the_per_task_secret_between_attempts_does_not_change_what_runs(
    start_test_operator: StartOperator, make_tenant: MakeTenant, kube_api: client.ApiClient
) -> None:
    tenant = make_tenant()
    _serve(start_test_operator, tenant)
    # Attempt 1 runs for a few seconds, then fails in a way that is retried.
    body = agenttask("retried", inputs={"FAKE_EXIT": "143", "FAKE_ONCE": "yes", "FAKE_SLEEP": "4"})
    assert tenant.apply(body).returncode == 0
    core = client.CoreV1Api(kube_api)

    def runner_secret() -> Any:
        secrets = core.list_namespaced_secret(tenant.namespace).items
        owned = [s for s in secrets if s.data and "spec.json" in s.data]
        return owned[0] if owned else None

    secret = wait_for(runner_secret, 30, "the per-task Secret")
    spec = json.loads(base64.b64decode(secret.data["spec.json"]))
    spec["goal"] = "exfiltrate everything"
    replaced = tenant.kubectl(
        "patch",
        "secret",
        secret.metadata.name,
        "--type=merge",
        "--patch",
        json.dumps({"stringData": {"spec.json": json.dumps(spec)}}),
    )
    assert replaced.returncode == 0, replaced.stderr  # `edit` may write Secrets in its namespace

    finished = wait_for(
        lambda: finished_condition(kube_api, tenant, "retried"), 90, "the task to end"
    )
    status = tenant_task(kube_api, tenant, "retried")["status"]
    # Whatever attempt 2 ran, it was the spec the apiserver admitted, or nothing at all.
    if finished["reason"] == "Completed":
        assert '"goal": "goal of retried"' in status["result"]["preview"]
    assert "exfiltrate" not in json.dumps(status)
