"""Long-term memory on the local cluster: the operator hands its Weaviate setting to the runner
Job, the real runner remembers through it, and the status mirror turns the runner's memory
events into the task's `MemoryAvailable` condition (True when Weaviate answers; False, with the
task still succeeding, when the operator has no Weaviate to offer)."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from opspawn.dev.operator_process import RUNNER_COMMAND
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.stack import DevStack
from opspawn.dev.weaviate import WeaviateServer
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
        *common,
        f"--weaviate-url={weaviate_server.url}",
        f"--weaviate-grpc-address={weaviate_server.grpc_address}",
        runner_command=runner,
    )
    available = run(tasks, memory_task("with-weaviate", collection))
    assert (available["status"], available["reason"]) == ("True", "MemoryAnswered")
    with_weaviate.stop()

    start_test_operator(*common, runner_command=runner)
    unavailable = run(tasks, memory_task("without-weaviate", collection))
    assert (unavailable["status"], unavailable["reason"]) == ("False", "MemoryUnavailable")
    assert "OPSPAWN_WEAVIATE_URL" in unavailable["message"]
