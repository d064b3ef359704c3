"""Long-term memory in the operator: runners learn where Weaviate is, and the status mirror
turns memory events into the `MemoryAvailable` condition without disturbing the others."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from opspawn.api.events import MemoryPayload, StepPayload, TaskRef, build_event
from opspawn.operator.kube import KubeClient
from opspawn.operator.mirror import StatusMirror
from opspawn.operator.runner_job import RunnerSettings, build_runner_job
from opspawn.operator.store import Store
from opspawn.operator.views import TaskView
from tests.unit.operator.builders import spec, task_body

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

TASK = TaskRef(namespace="team-a", task_name="summary", task_uid="uid-1", attempt=1)
SUCCEEDED_UNKNOWN = {
    "type": "Succeeded",
    "status": "Unknown",
    "reason": "InProgress",
    "message": "the task has not finished",
    "lastTransitionTime": "2026-01-01T12:00:00Z",
    "observedGeneration": 1,
}
MEMORY = {"longTerm": {"enabled": True, "collection": "TeamNotes"}}
SETTINGS = RunnerSettings(
    image="opspawn:test",
    nats_url="nats://nats:4222",
    weaviate_url="http://weaviate.memory:8080",
    weaviate_grpc_address="weaviate-grpc.memory:50051",
    embedding_models={"openai": "text-embedding-3-small"},
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env(task_spec: dict[str, Any]) -> dict[str, str]:
    body = task_body(task_spec, name=TASK.task_name, uid=TASK.task_uid)
    container = build_runner_job(body, 1, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry.get("value", "") for entry in container["env"]}


def test_runners_of_tasks_with_long_term_memory_learn_where_it_is() -> None:
    env = _env(spec(memory=MEMORY))
    assert env["OPSPAWN_WEAVIATE_URL"] == "http://weaviate.memory:8080"
    assert env["OPSPAWN_WEAVIATE_GRPC_ADDRESS"] == "weaviate-grpc.memory:50051"
    assert env["OPSPAWN_EMBEDDING_MODEL"] == "text-embedding-3-small"


def test_other_runners_get_no_memory_settings() -> None:
    assert not any(name.startswith("OPSPAWN_WEAVIATE") for name in _env(spec()))
    anthropic = spec(
        memory=MEMORY,
        model={
            "provider": "anthropic",
            "name": "claude",
            "apiKeySecretRef": {"name": "a", "key": "k"},
        },
    )
    assert "OPSPAWN_EMBEDDING_MODEL" not in _env(anthropic)


class StatusWrites:
    """Stands in for KubeClient.patch_task_status: merge-patches a status kept here."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.patches: list[dict[str, Any]] = []

    async def patch_task_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self.patches.append(dict(status))
        self.status.update(status)
        return task_body(spec(), dict(self.status), name=TASK.task_name, uid=TASK.task_uid)


async def _mirrored(*payloads: Any, succeeded: dict[str, Any] = SUCCEEDED_UNKNOWN) -> StatusWrites:
    """Observe events with `payloads` one by one, each written before the next."""
    status: dict[str, Any] = {"conditions": [succeeded]}
    store = Store()
    store.put_task(
        TaskView.from_body(task_body(spec(), status, name=TASK.task_name, uid=TASK.task_uid))
    )
    kube = StatusWrites(dict(status))
    mirror = StatusMirror(cast(KubeClient, kube), store, interval=0.001, writes_in_flight=8)
    running = asyncio.create_task(mirror.run())
    try:
        for sequence, payload in enumerate(payloads, start=1):
            mirror.observe([build_event(TASK, sequence, payload)])
            for _ in range(500):
                if kube.status.get("lastEvent", {}).get("sequence") == sequence:
                    break
                await asyncio.sleep(0.01)
    finally:
        running.cancel()
    return kube


def _condition(status: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def test_an_unavailable_store_sets_memory_available_false_and_keeps_other_conditions() -> (
    None
):
    kube = await _mirrored(
        MemoryPayload(operation="unavailable", detail="cannot connect to Weaviate")
    )

    memory = _condition(kube.status, "MemoryAvailable")
    assert (memory["status"], memory["reason"]) == ("False", "MemoryUnavailable")
    assert memory["message"] == "cannot connect to Weaviate"
    assert kube.status["lastEvent"]["summary"] == "memory unavailable: cannot connect to Weaviate"
    assert _condition(kube.status, "Succeeded") == SUCCEEDED_UNKNOWN


async def test_answers_set_it_true_once_and_compaction_does_not_count() -> None:
    kube = await _mirrored(
        MemoryPayload(operation="compact", count=3),
        MemoryPayload(operation="recall", count=2),
        StepPayload(step=1),
        MemoryPayload(operation="remember", count=1),
    )

    memory = _condition(kube.status, "MemoryAvailable")
    assert (memory["status"], memory["reason"]) == ("True", "MemoryAnswered")
    assert sum("conditions" in patch for patch in kube.patches) == 1


async def test_a_finished_tasks_conditions_are_left_alone() -> None:
    succeeded = {**SUCCEEDED_UNKNOWN, "status": "True", "reason": "Completed", "message": ""}
    kube = await _mirrored(
        MemoryPayload(operation="unavailable", detail="gone"), succeeded=succeeded
    )

    assert kube.status["conditions"] == [succeeded]
    assert kube.status["lastEvent"]["summary"] == "memory unavailable: gone"
