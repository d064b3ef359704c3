from __future__ import annotations

import pytest
from pydantic import ValidationError

from opspawn.runner.model import (
    Message,
    Role,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
)


def test_a_conversation_survives_a_json_round_trip() -> None:
    conversation = [
        Message.system("rules"),
        Message.user("question"),
        Message(
            role=Role.ASSISTANT,
            parts=(
                ThinkingPart(text="hm", signature="c2ln"),
                TextPart(text="Let me check.", signature="dA=="),
                ToolCall(id="c1", name="search", arguments={"q": "x"}, signature="eA=="),
            ),
        ),
        Message.tool([ToolResult(call_id="c1", name="search", content="found", is_error=False)]),
    ]
    dumped = [message.model_dump(mode="json") for message in conversation]
    assert [Message.model_validate(data) for data in dumped] == conversation


def test_accessors() -> None:
    message = Message(
        role=Role.ASSISTANT,
        parts=(
            ThinkingPart(text="not part of the text"),
            TextPart(text="a"),
            ToolCall(id="1", name="t"),
            TextPart(text="b"),
        ),
    )
    assert message.text == "ab"
    assert [call.id for call in message.tool_calls] == ["1"]
    assert (
        Message.tool([ToolResult(call_id="1", name="t", content="x")]).tool_results[0].content
        == "x"
    )


@pytest.mark.parametrize(
    ("role", "part"),
    [
        (Role.USER, ToolCall(id="1", name="t")),
        (Role.ASSISTANT, ToolResult(call_id="1", name="t", content="x")),
        (Role.TOOL, TextPart(text="x")),
        (Role.SYSTEM, ThinkingPart(text="x")),
    ],
)
def test_parts_must_fit_the_role(
    role: Role, part: TextPart | ThinkingPart | ToolCall | ToolResult
) -> None:
    with pytest.raises(ValidationError, match="cannot hold"):
        Message(role=role, parts=(part,))


def test_tool_names_are_the_ones_every_provider_accepts() -> None:
    ToolSpec(name="mcp-github__create_issue")
    for bad in ("", "has space", "dotted.name", "x" * 65):
        with pytest.raises(ValidationError):
            ToolSpec(name=bad)


def test_messages_are_immutable() -> None:
    message = Message.user("x")
    with pytest.raises(ValidationError):
        message.role = Role.SYSTEM  # type: ignore[misc]
