"""What only one provider does: Anthropic thinking blocks, Gemini call ids and signatures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from opspawn.fakes import FakeModelServer
from opspawn.runner.model import (
    Deadline,
    Message,
    ModelClient,
    ModelRequestError,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
)

pytestmark = pytest.mark.anyio

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]
Connect = Callable[..., ModelClient]
LOOKUP = ToolSpec(name="lookup", description="Look something up.")
ASK = [Message.user("Look it up.")]


def results_for(message: Message) -> Message:
    return Message.tool(
        ToolResult(call_id=call.id, name=call.name, content="found") for call in message.tool_calls
    )


async def test_anthropic_thinking_is_replayed_with_its_signature(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(
        {
            "turns": [
                {"thinking": "Which tool?", "tool_calls": [{"name": "lookup", "arguments": {}}]},
                {"text": "done"},
            ]
        }
    )
    client = connect(server, "anthropic")

    first = await client.complete(ASK, [LOOKUP], output_schema=None, deadline=Deadline.after(30))
    thinking = first.message.parts[0]
    assert isinstance(thinking, ThinkingPart)
    assert thinking.text == "Which tool?"
    assert thinking.signature

    history = [*ASK, first.message, results_for(first.message)]
    final = await client.complete(
        history, [LOOKUP], output_schema=None, deadline=Deadline.after(30)
    )

    assert final.message.text == "done"
    replayed = server.requests[1].body["messages"][1]["content"][0]
    assert replayed == {
        "type": "thinking",
        "thinking": "Which tool?",
        "signature": thinking.signature,
    }


async def test_gemini_call_ids_round_trip_when_given(serve: Serve, connect: Connect) -> None:
    server = await serve(
        {
            "turns": [
                {
                    "tool_calls": [
                        {
                            "name": "lookup",
                            "arguments": {"q": "a"},
                            "id": "fc-1",
                            "signature": "c2ln",
                        },
                        {"name": "lookup", "arguments": {"q": "b"}, "id": "fc-2"},
                    ]
                },
                {"text": "done"},
            ]
        }
    )
    client = connect(server, "google")

    first = await client.complete(ASK, [LOOKUP], output_schema=None, deadline=Deadline.after(30))
    assert [(c.id, c.signature) for c in first.message.tool_calls] == [
        ("fc-1", "c2ln"),
        ("fc-2", None),
    ]

    history = [*ASK, first.message, results_for(first.message)]
    await client.complete(history, [LOOKUP], output_schema=None, deadline=Deadline.after(30))

    model, user = server.requests[1].body["contents"][1:]
    assert [p["functionCall"]["id"] for p in model["parts"]] == ["fc-1", "fc-2"]
    assert [p.get("thoughtSignature") for p in model["parts"]] == ["c2ln", None]
    assert [p["functionResponse"]["id"] for p in user["parts"]] == ["fc-1", "fc-2"]


async def test_gemini_refuses_a_call_replayed_without_its_signature(
    serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"tool_calls": [{"name": "lookup"}]}, {"text": "done"}]})
    client = connect(server, "google")
    first = await client.complete(ASK, [LOOKUP], output_schema=None, deadline=Deadline.after(30))
    call = first.message.tool_calls[0]
    stripped = Message(role=first.message.role, parts=(ToolCall(id=call.id, name=call.name),))

    with pytest.raises(ModelRequestError, match="thought signature"):
        await client.complete(
            [*ASK, stripped, results_for(stripped)],
            [LOOKUP],
            output_schema=None,
            deadline=Deadline.after(30),
        )


async def test_gemini_asks_for_json_only_without_tools(serve: Serve, connect: Connect) -> None:
    server = await serve({"turns": [{"text": "ok"}]})
    client = connect(server, "google")
    schema = {"type": "object"}

    await client.complete(ASK, [LOOKUP], output_schema=schema, deadline=Deadline.after(30))

    assert "responseMimeType" not in server.requests[0].body.get("generationConfig", {})
