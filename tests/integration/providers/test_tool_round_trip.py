"""Each provider through its real SDK: parallel tool calls, results, final answer, usage."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from opspawn.fakes import FakeModelServer
from opspawn.runner.model import (
    Deadline,
    Message,
    ModelClient,
    PriceTable,
    StopReason,
    TokenUsage,
    ToolResult,
    ToolSpec,
    UsageLedger,
)

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]
Connect = Callable[..., ModelClient]
PROVIDERS = ("openai", "anthropic", "google")

pytestmark = pytest.mark.anyio

TOOLS = [
    ToolSpec(name="current_time", description="The current time.", parameters={"type": "object"}),
    ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression.",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    ),
]
TWO_TOOLS_THEN_ANSWER = {
    "turns": [
        {
            "tool_calls": [
                {"name": "current_time", "arguments": {}},
                {"name": "calculator", "arguments": {"expression": "6*7"}},
            ],
            "usage": {
                "input_tokens": 1000,
                "output_tokens": 50,
                "cached_tokens": 200,
                "reasoning_tokens": 10,
            },
        },
        {
            "text": "It is noon, and 6*7 is 42.",
            "usage": {"input_tokens": 1200, "output_tokens": 20},
        },
    ]
}
CONVERSATION = [Message.system("You are a careful agent."), Message.user("Time, and 6*7?")]


def answer(message: Message) -> Message:
    """Tool results for the calls of `message`: the first fails, the others succeed."""
    calls = message.tool_calls
    results = [
        ToolResult(call_id=calls[0].id, name=calls[0].name, content="clock broken", is_error=True)
    ]
    results += [ToolResult(call_id=c.id, name=c.name, content="42") for c in calls[1:]]
    return Message.tool(results)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_two_tool_calls_in_one_turn_round_trip(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve(TWO_TOOLS_THEN_ANSWER)
    client = connect(server, provider)

    first = await client.complete(
        CONVERSATION, TOOLS, output_schema=None, deadline=Deadline.after(30)
    )

    assert first.stop_reason is StopReason.TOOL_CALLS
    calls = first.message.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("current_time", {}),
        ("calculator", {"expression": "6*7"}),
    ]
    assert len({c.id for c in calls}) == 2

    history = [*CONVERSATION, first.message, answer(first.message)]
    final = await client.complete(history, TOOLS, output_schema=None, deadline=Deadline.after(30))

    assert final.stop_reason is StopReason.END_TURN
    assert final.message.text == "It is noon, and 6*7 is 42."
    assert final.message.tool_calls == ()
    assert [r.status for r in server.requests] == [200, 200]
    sent = server.requests[1].body
    assert_results_sent(provider, sent, first.message)


def assert_results_sent(provider: str, body: dict[str, Any], turn: Message) -> None:
    """The second request carries the calls and their results, matched by id."""
    calls = turn.tool_calls
    if provider == "openai":
        assistant, *tool_messages = body["messages"][-3:]
        assert [c["id"] for c in assistant["tool_calls"]] == [c.id for c in calls]
        assert [m["tool_call_id"] for m in tool_messages] == [c.id for c in calls]
        assert tool_messages[0]["content"] == "Error: clock broken"
        assert tool_messages[1]["content"] == "42"
    elif provider == "anthropic":
        assistant, user = body["messages"][-2:]
        assert [b["id"] for b in assistant["content"] if b["type"] == "tool_use"] == [
            c.id for c in calls
        ]
        results = user["content"]
        assert [b["tool_use_id"] for b in results] == [c.id for c in calls]
        assert [b["is_error"] for b in results] == [True, False]
    else:
        model, user = body["contents"][-2:]
        signature = calls[0].signature
        assert signature is not None
        assert base64.b64decode(signature)
        assert model["parts"][0]["thoughtSignature"] == signature
        assert [p["functionCall"]["name"] for p in model["parts"]] == [c.name for c in calls]
        assert "id" not in model["parts"][0]["functionCall"]
        responses = [p["functionResponse"] for p in user["parts"]]
        assert [r["name"] for r in responses] == [c.name for c in calls]
        assert responses[0]["response"] == {"error": "clock broken"}
        assert responses[1]["response"] == {"output": "42"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_is_normalised_and_priced(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve(TWO_TOOLS_THEN_ANSWER)
    client = connect(server, provider)
    prices = PriceTable.configured(
        {provider: {client.model: {"input": 1.0, "cached_input": 0.5, "output": 2.0}}}
    )
    ledger = UsageLedger(prices, provider=provider, model=client.model)

    first = await client.complete(
        CONVERSATION, TOOLS, output_schema=None, deadline=Deadline.after(30)
    )
    entry = ledger.record(first.usage)

    assert first.usage == TokenUsage(
        input_tokens=1000, cached_tokens=200, output_tokens=50, reasoning_tokens=10
    )
    assert entry.cost_usd == pytest.approx((800 * 1.0 + 200 * 0.5 + 50 * 2.0) / 1_000_000)

    history = [*CONVERSATION, first.message, answer(first.message)]
    final = await client.complete(history, TOOLS, output_schema=None, deadline=Deadline.after(30))
    ledger.record(final.usage)

    assert ledger.total == TokenUsage(
        input_tokens=2200, cached_tokens=200, output_tokens=70, reasoning_tokens=10
    )
    assert ledger.cost_usd == pytest.approx((2000 * 1.0 + 200 * 0.5 + 70 * 2.0) / 1_000_000)
    assert (
        UsageLedger(PriceTable.builtin(), provider=provider, model="no-such-model")
        .record(final.usage)
        .cost_usd
        is None
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_structured_output_is_requested(
    provider: str, serve: Serve, connect: Connect
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    server = await serve({"turns": [{"json": {"answer": 42}}]})
    client = connect(server, provider)

    response = await client.complete(
        [Message.user("6*7 as JSON")], [], output_schema=schema, deadline=Deadline.after(30)
    )

    assert json.loads(response.message.text) == {"answer": 42}
    body = server.requests[0].body
    if provider == "openai":
        assert body["response_format"]["json_schema"]["schema"] == schema
    elif provider == "anthropic":
        assert body["output_config"]["format"] == {"type": "json_schema", "schema": schema}
    else:
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        assert body["generationConfig"]["responseJsonSchema"] == schema


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sampling_parameters_reach_the_provider(
    provider: str, serve: Serve, connect: Connect, fake_key: str
) -> None:
    server = await serve({"turns": [{"text": "ok"}]})
    client = connect(server, provider, temperature=0.5, topP=0.9, maxOutputTokens=321)

    await client.complete([Message.user("hi")], [], output_schema=None, deadline=Deadline.after(30))

    body = server.requests[0].body
    if provider == "openai":
        assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (
            0.5,
            0.9,
            321,
        )
    elif provider == "anthropic":
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 321)
    else:
        config = body["generationConfig"]
        assert (config["temperature"], config["topP"], config["maxOutputTokens"]) == (0.5, 0.9, 321)
    assert fake_key not in json.dumps(body)
