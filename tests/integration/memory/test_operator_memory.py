"""Long-term memory on the local cluster: the operator provisions the namespace in Weaviate
(RBAC on) and hands the runner Job its Weaviate setting and the namespace's key by reference,
the real runner remembers through it, and the status mirror turns the runner's memory events
into the task's `MemoryAvailable` condition (True when Weaviate answers; False, with the task
still succeeding, when the operator has no Weaviate to offer). A restarted operator keeps the
namespace's key; the key is never in the Job, the task's status or the operator's log."""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.dev.operator_process import RUNNER_COMMAND
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.stack import DevStack
from opspawn.dev.weaviate import WeaviateServer
from opspawn.operator.runner_job import MEMORY_API_KEY_KEY, MEMORY_SECRET
from opspawn.operator.weaviate_admin import connection, principal_name
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask

pytestmark = pytest.mark.timeout(240)

SCRIPT = {
    "turns": [
        {
            "tool_calls": [
                {"name": "remember", "arguments": {"text": "Staging upgrades on Tuesdays."}}
            ]
        },
        {"text": "Noted."},
    ]
}


@pytest.fixture
def model_url(tmp_path: Path) -> Iterator[str]:
    """The mock model as a process of its own, playing SCRIPT."""
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump(SCRIPT))
    port = free_port()
    model = ManagedProcess(
        name="mock-model",
        argv=[
            *RUNNER_COMMAND[:1],
            *("-m", "opspawn.cli", "dev", "mock-model"),
            *("--port", str(port), "--script", str(script)),
        ],
        log_path=tmp_path / "mock-model.log",
    )
    model.start()
    try:
        model.wait_ready(lambda: is_listening(port), timeout=30)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        model.stop()


def memory_task(name: str, collection: str) -> dict[str, Any]:
    return agenttask(
        name,
        goal="Remember when staging is upgraded.",
        model={"provider": "openai-compatible", "name": "mock", "baseURL": "http://models/v1"},
        tools={"builtin": [{"name": "remember"}]},
        memory={"longTerm": {"enabled": True, "collection": collection}},
        limits={"maxSteps": 5, "timeoutSeconds": 120},
    )


def run(tasks: Tasks, body: dict[str, Any]) -> dict[str, Any]:
    """Create the task and wait until it has finished and shows MemoryAvailable."""
    name = body["metadata"]["name"]
    tasks.create(body)
    finished = wait_for(lambda: tasks.finished(name), 150, f"{name} to finish")
    assert finished["status"] == "True", tasks.status(name)
    return wait_for(
        lambda: tasks.condition(name, "MemoryAvailable"), 30, f"{name}'s MemoryAvailable"
    )


def weaviate_options(server: WeaviateServer) -> tuple[str, ...]:
    return (
        f"--weaviate-url={server.url}",
        f"--weaviate-grpc-address={server.grpc_address}",
        f"--weaviate-api-key-file={server.admin_key_file}",
    )


def namespace_key(tasks: Tasks) -> str:
    secret = tasks.core.read_namespaced_secret(MEMORY_SECRET, tasks.namespace)
    return base64.b64decode(secret.data[MEMORY_API_KEY_KEY]).decode()


async def whose_key(server: WeaviateServer, key: str) -> str:
    client = connection(WeaviateAddress.parse(server.url, server.grpc_address), key)
    try:
        await client.connect()
        return (await client.users.get_my_user()).user_id
    finally:
        await client.close()


def test_memory_available_follows_the_runners_memory_events(
    stack: DevStack,
    start_test_operator: StartOperator,
    tasks: Tasks,
    weaviate_server: WeaviateServer,
    model_url: str,
) -> None:
    collection = f"Notes{uuid.uuid4().hex[:12]}"
    assert stack.postgres is not None
    common = (
        "--database-url",
        stack.postgres.url,
        f"--model-base-url=openai-compatible={model_url}",
    )
    runner = shlex.join(RUNNER_COMMAND)
    with_weaviate = start_test_operator(
        *common, *weaviate_options(weaviate_server), runner_command=runner
    )
    available = run(tasks, memory_task("with-weaviate", collection))
    assert (available["status"], available["reason"]) == ("True", "MemoryAnswered")
    with_weaviate.stop()

    start_test_operator(*common, runner_command=runner)
    unavailable = run(tasks, memory_task("without-weaviate", collection))
    assert (unavailable["status"], unavailable["reason"]) == ("False", "MemoryUnavailable")
    assert "OPSPAWN_WEAVIATE_URL" in unavailable["message"]


def test_the_runner_gets_its_namespaces_key_by_reference_and_keeps_it_across_restarts(
    stack: DevStack,
    start_test_operator: StartOperator,
    tasks: Tasks,
    weaviate_server: WeaviateServer,
    model_url: str,
) -> None:
    collection = f"Notes{uuid.uuid4().hex[:12]}"
    assert stack.postgres is not None
    options = (
        "--database-url",
        stack.postgres.url,
        f"--model-base-url=openai-compatible={model_url}",
        *weaviate_options(weaviate_server),
    )
    runner = shlex.join(RUNNER_COMMAND)
    first_operator = start_test_operator(*options, runner_command=runner)
    first = run(tasks, memory_task("first", collection))
    assert (first["status"], first["reason"]) == ("True", "MemoryAnswered")
    key = namespace_key(tasks)
    assert asyncio.run(whose_key(weaviate_server, key)) == principal_name(tasks.namespace)

    (job,) = tasks.jobs("first")
    (container,) = job.spec.template.spec.containers
    (variable,) = [e for e in container.env if e.name == "OPSPAWN_WEAVIATE_API_KEY"]
    assert variable.value is None
    reference = variable.value_from.secret_key_ref
    assert (reference.name, reference.key) == (MEMORY_SECRET, MEMORY_API_KEY_KEY)
    first_operator.stop()

    second_operator = start_test_operator(*options, runner_command=runner)
    second = run(tasks, memory_task("second", collection))
    assert (second["status"], second["reason"]) == ("True", "MemoryAnswered")
    assert namespace_key(tasks) == key  # found again, not rotated under running runners
    second_operator.stop()

    shown = [
        json.dumps(tasks.batch.api_client.sanitize_for_serialization(job))
        for name in ("first", "second")
        for job in tasks.jobs(name)
    ]
    shown += [json.dumps(tasks.status(name)) for name in ("first", "second")]
    shown += [o.process.log_path.read_text() for o in (first_operator, second_operator)]
    assert not [text for text in shown if key in text or weaviate_server.admin_key in text]


def test_with_weaviate_down_at_launch_the_task_runs_without_memory_and_says_why(
    stack: DevStack,
    start_test_operator: StartOperator,
    tasks: Tasks,
    model_url: str,
    tmp_path: Path,
) -> None:
    assert stack.postgres is not None
    key_file = tmp_path / "weaviate-root-key"
    key_file.write_text("a-root-key-of-a-weaviate-that-is-down")
    start_test_operator(
        "--database-url",
        stack.postgres.url,
        f"--model-base-url=openai-compatible={model_url}",
        f"--weaviate-url=http://127.0.0.1:{free_port()}",  # nothing listens
        f"--weaviate-grpc-address=127.0.0.1:{free_port()}",
        f"--weaviate-api-key-file={key_file}",
        runner_command=shlex.join(RUNNER_COMMAND),
    )
    unavailable = run(tasks, memory_task("weaviate-down", f"Notes{uuid.uuid4().hex[:12]}"))
    assert (unavailable["status"], unavailable["reason"]) == ("False", "MemoryUnavailable")
    assert "OPSPAWN_WEAVIATE_API_KEY" in unavailable["message"]

    def provisioning_event() -> Any:
        events = tasks.core.list_namespaced_event(tasks.namespace).items
        return next((e for e in events if e.reason == "MemoryNotProvisioned"), None)

    event = wait_for(provisioning_event, 30, "the MemoryNotProvisioned Event")
    assert event.type == "Warning" and event.involved_object.name == "weaviate-down"
    assert "cannot connect to Weaviate" in event.message
