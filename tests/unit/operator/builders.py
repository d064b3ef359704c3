"""Kubernetes-shaped AgentTask, Job and Pod bodies for the operator's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opspawn.api.agenttask import AgentTaskStatus
from opspawn.api.events import RunnerExitCode, TerminationMessage
from opspawn.operator.runner_job import ATTEMPT_LABEL, TASK_UID_LABEL, job_name
from opspawn.operator.views import JobView, TaskView

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NAMESPACE = "team-a"
TASK_NAME = "summarise"
TASK_UID = "0f4c2a9e-1111-2222-3333-444455556666"


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid AgentTask spec (as the apiserver serves it), with `overrides` on top."""
    body: dict[str, Any] = {
        "goal": "Summarise the release notes",
        "model": {
            "provider": "openai",
            "name": "gpt-4.1-mini",
            "apiKeySecretRef": {"name": "openai", "key": "api-key"},
        },
        "retry": {"limit": 2, "backoff": {"initialSeconds": 10, "maxSeconds": 300}},
    }
    body.update(overrides)
    return body


def task_body(
    task_spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    *,
    name: str = TASK_NAME,
    uid: str = TASK_UID,
    generation: int = 1,
    resource_version: str = "100",
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid,
        "generation": generation,
        "resourceVersion": resource_version,
        "creationTimestamp": "2026-01-01T11:59:00Z",
        "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"},
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    body: dict[str, Any] = {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": metadata,
        "spec": spec() if task_spec is None else task_spec,
    }
    if status is not None:
        body["status"] = status
    return body


def task(
    task_spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **meta: Any
) -> TaskView:
    return TaskView.from_body(task_body(task_spec, status, **meta))


def served(status: AgentTaskStatus) -> dict[str, Any]:
    """A status as the operator writes it and the apiserver serves it back."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def owner_reference(uid: str = TASK_UID, name: str = TASK_NAME) -> dict[str, Any]:
    """The controller ownerReference the operator puts on a task's children."""
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_body(
    attempt: int = 1,
    *,
    task_uid: str = TASK_UID,
    active: int = 1,
    ready: int = 0,
    suspend: bool = False,
    deleting: bool = False,
    complete: bool = False,
    failed: tuple[str, str] | None = None,
    created: str = "2026-01-01T12:00:00Z",
    resource_version: str = "1",
    namespace: str = NAMESPACE,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """A runner Job; `failed` is the (reason, message) of its Failed condition; controlled by
    the task of `owner_uid` (by default the one its label names; "" for no controller)."""
    conditions: list[dict[str, Any]] = []
    if complete:
        conditions.append({"type": "SuccessCriteriaMet", "status": "True"})
        conditions.append({"type": "Complete", "status": "True"})
    if failed is not None:
        reason, message = failed
        conditions.append(
            {"type": "FailureTarget", "status": "True", "reason": reason, "message": message}
        )
        conditions.append(
            {"type": "Failed", "status": "True", "reason": reason, "message": message}
        )
    metadata: dict[str, Any] = {
        "name": job_name(TASK_NAME, task_uid, attempt),
        "namespace": namespace,
        "uid": f"job-uid-{attempt}",
        "resourceVersion": resource_version,
        "labels": {TASK_UID_LABEL: task_uid, ATTEMPT_LABEL: str(attempt)},
        "creationTimestamp": created,
    }
    owner = task_uid if owner_uid is None else owner_uid
    if owner:
        metadata["ownerReferences"] = [owner_reference(owner)]
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T12:00:30Z"
    status: dict[str, Any] = {"conditions": conditions}
    if active:
        status["active"] = active
    if ready:
        status["ready"] = ready
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"suspend": suspend, "backoffLimit": 0},
        "status": status,
    }


def job(attempt: int = 1, **fields: Any) -> JobView:
    return JobView.from_body(job_body(attempt, **fields))


def termination_message(
    exit_code: RunnerExitCode, message: str = "", result: str | None = None
) -> str:
    """What the runner leaves in its termination-message file."""
    return TerminationMessage.build(exit_code, result=result, message=message).to_bytes().decode()


def pod(
    exit_code: int | None,
    message: str = "",
    *,
    created: str = "2026-01-01T12:00:01Z",
    terminated_reason: str = "Error",
    pod_reason: str | None = None,
    pod_message: str | None = None,
) -> dict[str, Any]:
    """A runner Pod; `exit_code` None means its container never reported a terminated state."""
    state: dict[str, Any] = (
        {"waiting": {"reason": "ContainerCreating"}}
        if exit_code is None
        else {
            "terminated": {
                "exitCode": exit_code,
                "reason": terminated_reason,
                "message": message,
                "startedAt": "2026-01-01T12:00:02Z",
                "finishedAt": "2026-01-01T12:01:00Z",
            }
        }
    )
    status: dict[str, Any] = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [{"name": "runner", "ready": False, "state": state}],
    }
    if pod_reason is not None:
        status["reason"] = pod_reason
    if pod_message is not None:
        status["message"] = pod_message
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"runner-{created}",
            "namespace": NAMESPACE,
            "creationTimestamp": created,
        },
        "status": status,
    }
