"""Long-term memory through the runner process: real Weaviate (with RBAC, each namespace's
runner holding the key the operator provisioned for it), NATS and the fake model server with
scripted tool calls. A fact one task remembers is recalled by a later task in the same
namespace (at the start, with its goal, and through the `recall` tool) and by none in another
namespace; with Weaviate down, or without a key, a task goes on without memory, or fails with a
clear reason when it requires memory."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from opspawn.api.events import (
    EventType,
    FinishedPayload,
    LogPayload,
    MemoryPayload,
    RunnerEvent,
    ToolResultPayload,
)
from opspawn.api.memory_spaces import WORDLLAMA_SPACE, embedding_space
from opspawn.dev.ports import free_port
from opspawn.dev.weaviate import WeaviateServer
from opspawn.fakes import FakeModelServer
from tests.integration.conftest import Serve
from tests.integration.memory.conftest import Provision
from tests.integration.runner_loop.conftest import Run, RunnerProcess, stored_events, task_spec

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

FACT = "The staging cluster is upgraded every Tuesday at 10:00 UTC."
QUESTION = "When is the staging cluster upgraded?"
REMEMBER_IT = {
    "turns": [
        {"tool_calls": [{"name": "remember", "arguments": {"text": FACT}}]},
        {"text": "Noted."},
    ]
}
RECALL_IT = {
    "turns": [
        {"tool_calls": [{"name": "recall", "arguments": {"query": "staging upgrade schedule"}}]},
        {"text": "On Tuesdays."},
    ]
}


def memory_spec(collection: str, goal: str, **long_term: Any) -> dict[str, Any]:
    return task_spec(
        "openai",
        goal=goal,
        tools={"builtin": [{"name": "remember"}, {"name": "recall"}]},
        memory={
            "longTerm": {
                "enabled": True,
                "collection": collection,
                "minSimilarity": 0.3,
                **long_term,
            }
        },
    )


def events_of(stored: list[Any], uid: str) -> list[RunnerEvent]:
    return [s.event for s in stored if s.event.task_uid == uid]


def memory_events(events: list[RunnerEvent], operation: str) -> list[MemoryPayload]:
    return [
        p for e in events if isinstance(p := e.payload, MemoryPayload) and p.operation == operation
    ]


def tool_result(events: list[RunnerEvent], tool: str) -> ToolResultPayload:
    return next(
        p for e in events if isinstance(p := e.payload, ToolResultPayload) and p.tool == tool
    )


def first_prompt(server: FakeModelServer) -> str:
    """The messages of the first model call (embeddings requests aside)."""
    chats = [r for r in server.requests if r.path.endswith("/chat/completions")]
    return json.dumps(chats[0].body["messages"])


async def run_task(
    start_runner: Run,
    server: FakeModelServer,
    spec: dict[str, Any],
    *,
    namespace: str,
    weaviate: tuple[str, str],
    key: str | None,
    **env: str,
) -> tuple[RunnerProcess, str]:
    """Run the task with the namespace's Weaviate `key` (None: none, as when the operator
    could not provision one)."""
    uid = str(uuid.uuid4())
    runner = await start_runner(
        spec,
        server,
        OPSPAWN_TASK_NAMESPACE=namespace,
        OPSPAWN_TASK_UID=uid,
        OPSPAWN_WEAVIATE_URL=weaviate[0],
        OPSPAWN_WEAVIATE_GRPC_ADDRESS=weaviate[1],
        **({"OPSPAWN_WEAVIATE_API_KEY": key} if key is not None else {}),
        **env,
    )
    return runner, uid


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_remembered_fact_is_recalled_later_in_its_namespace_only(
    serve: Serve,
    start_runner: Run,
    event_stream: NatsClient,
    *,
    weaviate_server: WeaviateServer,
    collection: str,
    provision: Provision,
) -> None:
    weaviate = (weaviate_server.url, weaviate_server.grpc_address)
    key_a, key_b = (
        await provision("team-a", WORDLLAMA_SPACE),
        await provision("team-b", WORDLLAMA_SPACE),
    )
    writer_model = await serve(REMEMBER_IT)
    writer, writer_uid = await run_task(
        start_runner,
        writer_model,
        memory_spec(collection, "Remember when staging is upgraded."),
        namespace="team-a",
        weaviate=weaviate,
        key=key_a,
    )
    assert await writer.finish() == 0, writer.stderr

    same_ns_model, other_ns_model = await serve(RECALL_IT), await serve(RECALL_IT)
    reader, reader_uid = await run_task(
        start_runner,
        same_ns_model,
        memory_spec(collection, QUESTION),
        namespace="team-a",
        weaviate=weaviate,
        key=key_a,
    )
    stranger, stranger_uid = await run_task(
        start_runner,
        other_ns_model,
        memory_spec(collection, QUESTION),
        namespace="team-b",
        weaviate=weaviate,
        key=key_b,
    )
    assert await reader.finish() == 0, reader.stderr
    assert await stranger.finish() == 0, stranger.stderr

    stored = await stored_events(event_stream)
    written = events_of(stored, writer_uid)
    assert tool_result(written, "remember").content == "Remembered."
    assert [p.detail for p in memory_events(written, "remember")] == [FACT]

    read = events_of(stored, reader_uid)
    assert FACT in first_prompt(same_ns_model)  # recalled at the start, with the goal
    assert FACT in tool_result(read, "recall").content
    assert "remembered by task two-tools" in tool_result(read, "recall").content
    start_recall, tool_recall = memory_events(read, "recall")
    assert start_recall.count == tool_recall.count == 1
    assert FACT in start_recall.detail

    elsewhere = events_of(stored, stranger_uid)
    assert FACT not in first_prompt(other_ns_model)
    assert tool_result(elsewhere, "recall").content == "No relevant memories."
    assert [p.count for p in memory_events(elsewhere, "recall")] == [0, 0]


async def test_with_the_providers_embedding_model_memories_carry_over_too(
    serve: Serve,
    start_runner: Run,
    event_stream: NatsClient,
    *,
    weaviate_server: WeaviateServer,
    collection: str,
    provision: Provision,
) -> None:
    weaviate = (weaviate_server.url, weaviate_server.grpc_address)
    key = await provision("team-a", embedding_space("openai", "text-embedding-3-small"))
    embedding = {"OPSPAWN_EMBEDDING_MODEL": "text-embedding-3-small"}
    writer_model, reader_model = await serve(REMEMBER_IT), await serve(RECALL_IT)
    writer, _ = await run_task(
        start_runner,
        writer_model,
        memory_spec(collection, "Remember when staging is upgraded."),
        namespace="team-a",
        weaviate=weaviate,
        key=key,
        **embedding,
    )
    assert await writer.finish() == 0, writer.stderr
    reader, reader_uid = await run_task(
        start_runner,
        reader_model,
        memory_spec(collection, QUESTION),
        namespace="team-a",
        weaviate=weaviate,
        key=key,
        **embedding,
    )
    assert await reader.finish() == 0, reader.stderr

    embedded = [r.body["input"] for r in writer_model.requests if r.path == "/v1/embeddings"]
    assert [FACT] in embedded  # the fact was embedded by the provider, through its SDK
    assert any(r.path == "/v1/embeddings" for r in reader_model.requests)
    assert FACT in first_prompt(reader_model)
    read = events_of(await stored_events(event_stream), reader_uid)
    assert FACT in memory_events(read, "recall")[0].detail


async def test_with_weaviate_down_the_task_goes_on_without_memory(
    serve: Serve, start_runner: Run, event_stream: NatsClient, collection: str
) -> None:
    down = (f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")  # nothing listens
    model = await serve(REMEMBER_IT)
    runner, uid = await run_task(
        start_runner,
        model,
        memory_spec(collection, QUESTION),
        namespace="team-a",
        weaviate=down,
        key="a-key-nobody-can-check",
    )

    assert await runner.finish() == 0, runner.stderr

    events = events_of(await stored_events(event_stream), uid)
    (unavailable,) = memory_events(events, "unavailable")
    assert "cannot connect to Weaviate" in unavailable.detail
    warnings = [p.message for e in events if isinstance(p := e.payload, LogPayload)]
    assert any("going on without it" in message for message in warnings)
    result = tool_result(events, "remember")
    assert result.is_error and "long-term memory is unavailable" in result.content
    finished = events[-1].payload
    assert isinstance(finished, FinishedPayload) and finished.reason == "Completed"


async def test_with_weaviate_down_a_task_that_requires_memory_fails_clearly(
    serve: Serve, start_runner: Run, event_stream: NatsClient, collection: str
) -> None:
    down = (f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    model = await serve(REMEMBER_IT)
    spec = memory_spec(collection, QUESTION, required=True)
    runner, uid = await run_task(
        start_runner, model, spec, namespace="team-a", weaviate=down, key="a-key-nobody-can-check"
    )

    assert await runner.finish() == 75, runner.stderr

    assert model.requests == []  # the model was never called
    events = events_of(await stored_events(event_stream), uid)
    assert [e.type for e in events][-3:] == [EventType.MEMORY, EventType.ERROR, EventType.FINISHED]
    finished = events[-1].payload
    assert isinstance(finished, FinishedPayload) and finished.reason == "MemoryUnavailable"
    message = runner.termination_message()["message"]
    assert message.startswith("MemoryUnavailable: long-term memory is required")
    assert "cannot connect to Weaviate" in message


async def test_without_its_namespaces_key_a_runner_goes_on_without_memory(
    serve: Serve,
    start_runner: Run,
    event_stream: NatsClient,
    weaviate_server: WeaviateServer,
    collection: str,
) -> None:
    weaviate = (weaviate_server.url, weaviate_server.grpc_address)
    model = await serve(REMEMBER_IT)
    runner, uid = await run_task(
        start_runner,
        model,
        memory_spec(collection, QUESTION),
        namespace="team-a",
        weaviate=weaviate,
        key=None,
    )

    assert await runner.finish() == 0, runner.stderr

    events = events_of(await stored_events(event_stream), uid)
    (unavailable,) = memory_events(events, "unavailable")
    assert "OPSPAWN_WEAVIATE_API_KEY" in unavailable.detail
    result = tool_result(events, "remember")
    assert result.is_error and "long-term memory is unavailable" in result.content
