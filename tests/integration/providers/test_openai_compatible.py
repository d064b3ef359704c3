"""openai-compatible servers through baseURL: native tool calling and the ReAct protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from opspawn.fakes import FakeModelServer
from opspawn.runner.model import (
    Deadline,
    Message,
    ModelClient,
    StopReason,
    ToolResult,
    ToolSpec,
)

pytestmark = pytest.mark.anyio

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]
Connect = Callable[..., ModelClient]

SEARCH = ToolSpec(
    name="search",
    description="Search the web.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}},
)
FETCH = ToolSpec(
    name="fetch",
    description="Fetch a URL.",
    parameters={"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
)
SCRIPT = {
    "turns": [
        {
            "thinking": "I need to search and to fetch.",
            "tool_calls": [
                {"name": "search", "arguments": {"query": "opspawn"}},
                {"name": "fetch", "arguments": {"url": "https://example.com/"}},
            ],
        },
        {"text": "Opspawn runs agents on Kubernetes."},
    ]
}


async def test_native_tools_through_base_url(serve: Serve, connect: Connect) -> None:
    server = await serve(SCRIPT)
    client = connect(server, "openai-compatible", api_key=None, maxOutputTokens=100)

    first = await client.complete(
        [Message.user("What is opspawn?")],
        [SEARCH, FETCH],
        output_schema=None,
        deadline=Deadline.after(30),
    )

    assert client.provider == "openai-compatible"
    assert [c.name for c in first.message.tool_calls] == ["search", "fetch"]
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer no-key"
    assert request.body["max_tokens"] == 100
    assert "max_completion_tokens" not in request.body


async def test_react_protocol_round_trip(serve: Serve, connect: Connect) -> None:
    server = await serve(SCRIPT)
    client = connect(server, "openai-compatible", toolCalling="react")
    conversation = [Message.system("Be brief."), Message.user("What is opspawn?")]

    first = await client.complete(
        conversation, [SEARCH, FETCH], output_schema=None, deadline=Deadline.after(30)
    )

    assert first.stop_reason is StopReason.TOOL_CALLS
    calls = first.message.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("react_0_0", "search", {"query": "opspawn"}),
        ("react_0_1", "fetch", {"url": "https://example.com/"}),
    ]
    sent = server.requests[0].body
    assert "tools" not in sent
    assert sent["stop"] == ["\nObservation:"]
    system = sent["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.")
    assert "Action Input:" in system["content"]
    assert "- fetch: Fetch a URL." in system["content"]

    results = Message.tool(
        [
            ToolResult(call_id="react_0_0", name="search", content="a k8s operator"),
            ToolResult(call_id="react_0_1", name="fetch", content="timeout", is_error=True),
        ]
    )
    final = await client.complete(
        [*conversation, first.message, results],
        [SEARCH, FETCH],
        output_schema=None,
        deadline=Deadline.after(30),
    )

    assert final.stop_reason is StopReason.END_TURN
    assert final.message.text == "Opspawn runs agents on Kubernetes."
    history = server.requests[1].body["messages"]
    assert history[-2] == {
        "role": "assistant",
        "content": "Thought: I need to search and to fetch.\n"
        'Action: search\nAction Input: {"query": "opspawn"}\n'
        'Action: fetch\nAction Input: {"url": "https://example.com/"}',
    }
    assert history[-1] == {
        "role": "user",
        "content": "Observation (search, call react_0_0): a k8s operator\n"
        "Observation (fetch, call react_0_1) ERROR: timeout",
    }


async def test_react_structured_output_is_asked_in_the_prompt(
    serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"json": {"answer": 42}}]})
    client = connect(server, "openai-compatible", toolCalling="react")
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}

    response = await client.complete(
        [Message.user("6*7?")], [], output_schema=schema, deadline=Deadline.after(30)
    )

    assert response.message.text == '{"answer": 42}'
    sent = server.requests[0].body
    assert "response_format" not in sent
    assert '"answer": {"type": "integer"}' in sent["messages"][0]["content"]
