"""The adapters' pure translations between the neutral model and each wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message as AnthropicMessage
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion

from opspawn.runner.model import (
    Message,
    ModelResponseError,
    Role,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
)
from opspawn.runner.model.anthropic import from_anthropic_message, to_anthropic_messages
from opspawn.runner.model.errors import unusable_answers
from opspawn.runner.model.google import (
    LOCAL_CALL_ID_PREFIX,
    from_google_response,
    to_google_contents,
)
from opspawn.runner.model.openai import from_openai_completion, to_openai_messages

CALL = ToolCall(id="c1", name="lookup", arguments={"q": "x"})
CONVERSATION = [
    Message.system("rules"),
    Message.user("question"),
    Message(
        role=Role.ASSISTANT,
        parts=(ThinkingPart(text="foreign thought"), TextPart(text="Checking."), CALL),
    ),
    Message.tool([ToolResult(call_id="c1", name="lookup", content="nothing", is_error=True)]),
    Message.user("and now?"),
]


def plain(wire: object) -> Any:
    """Wire-format TypedDicts as plain JSON data, to index freely."""
    return json.loads(json.dumps(wire))


def completion(message: dict[str, object], finish_reason: str = "stop") -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        }
    )


# --------------------------------------------------------------------------- openai


def test_openai_messages() -> None:
    assert to_openai_messages(CONVERSATION) == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "question"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Error: nothing"},
        {"role": "user", "content": "and now?"},
    ]


def test_openai_malformed_arguments_are_kept_and_sent_back_verbatim() -> None:
    response = from_openai_completion(
        completion(
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "", "type": "function", "function": {"name": "t", "arguments": "{bad"}}
                ],
            },
            "tool_calls",
        ),
        provider="openai",
        turn=2,
        attempts=1,
    )
    (call,) = response.message.tool_calls
    assert (call.id, call.arguments, call.malformed_arguments) == ("call_2_0", {}, "{bad")
    (sent,) = plain(to_openai_messages([response.message]))
    assert sent["tool_calls"][0]["function"]["arguments"] == "{bad"


@pytest.mark.parametrize(
    ("message", "finish", "stop"),
    [
        ({"role": "assistant", "content": "cut"}, "length", StopReason.MAX_TOKENS),
        ({"role": "assistant", "refusal": "no"}, "stop", StopReason.CONTENT_FILTER),
        ({"role": "assistant", "content": "done"}, "stop", StopReason.END_TURN),
    ],
)
def test_openai_stop_reasons(message: dict[str, object], finish: str, stop: StopReason) -> None:
    response = from_openai_completion(
        completion(message, finish), provider="openai", turn=0, attempts=1
    )
    assert response.stop_reason is stop
    assert response.raw_stop_reason == finish


def test_openai_without_choices_is_a_response_error() -> None:
    empty = ChatCompletion.model_validate(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    )
    with pytest.raises(ModelResponseError, match="no choices"):
        from_openai_completion(empty, provider="openai", turn=0, attempts=1)


# --------------------------------------------------------------------------- anthropic


def test_anthropic_messages_merge_user_side_turns_and_drop_unsigned_thinking() -> None:
    assert to_anthropic_messages(CONVERSATION) == [
        {"role": "user", "content": [{"type": "text", "text": "question"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "c1", "name": "lookup", "input": {"q": "x"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "c1",
                    "content": "nothing",
                    "is_error": True,
                },
                {"type": "text", "text": "and now?"},
            ],
        },
    ]


def test_anthropic_redacted_thinking_round_trips() -> None:
    answer = AnthropicMessage.model_validate(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "hi"},
            ],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    response = from_anthropic_message(answer, attempts=1)
    assert response.stop_reason is StopReason.MAX_TOKENS
    assert response.message.parts[0] == ThinkingPart(signature="opaque", redacted=True)
    sent = plain(to_anthropic_messages([Message.user("q"), response.message]))
    assert sent[1]["content"][0] == {"type": "redacted_thinking", "data": "opaque"}


# --------------------------------------------------------------------------- google


def test_google_contents_merge_user_side_turns_and_omit_local_ids() -> None:
    local = ToolCall(id=f"{LOCAL_CALL_ID_PREFIX}0-0", name="lookup", signature="c2ln")
    conversation = [
        Message.user("q"),
        Message(role=Role.ASSISTANT, parts=(local,)),
        Message.tool([ToolResult(call_id=local.id, name="lookup", content="r")]),
        Message.user("more"),
    ]
    contents = [c.model_dump(exclude_none=True) for c in to_google_contents(conversation)]
    assert contents == [
        {"role": "user", "parts": [{"text": "q"}]},
        {
            "role": "model",
            "parts": [
                {"function_call": {"name": "lookup", "args": {}}, "thought_signature": b"sig"}
            ],
        },
        {
            "role": "user",
            "parts": [
                {"function_response": {"name": "lookup", "response": {"output": "r"}}},
                {"text": "more"},
            ],
        },
    ]


def test_google_thoughts_signatures_and_missing_ids() -> None:
    response = genai_types.GenerateContentResponse(
        candidates=[
            genai_types.Candidate(
                content=genai_types.Content(
                    role="model",
                    parts=[
                        genai_types.Part(text="pondering", thought=True),
                        genai_types.Part(text="", thought_signature=b"t"),
                        genai_types.Part(
                            function_call=genai_types.FunctionCall(name="lookup", args={"q": 1}),
                            thought_signature=b"s",
                        ),
                    ],
                ),
                finish_reason=genai_types.FinishReason.STOP,
            )
        ]
    )
    result = from_google_response(response, requested_model="gemini", turn=4, attempts=1)
    thought, text, call = result.message.parts
    assert thought == ThinkingPart(text="pondering")
    assert text == TextPart(text="", signature="dA==")
    assert call == ToolCall(
        id=f"{LOCAL_CALL_ID_PREFIX}4-2", name="lookup", arguments={"q": 1}, signature="cw=="
    )
    assert result.stop_reason is StopReason.TOOL_CALLS
    assert result.model == "gemini"


def test_google_safety_stop_and_blocked_prompts() -> None:
    blocked = genai_types.GenerateContentResponse(
        prompt_feedback=genai_types.GenerateContentResponsePromptFeedback(
            block_reason=genai_types.BlockedReason.SAFETY
        )
    )
    with pytest.raises(ModelResponseError, match="SAFETY"):
        from_google_response(blocked, requested_model="g", turn=0, attempts=1)
    unsafe = genai_types.GenerateContentResponse(
        candidates=[genai_types.Candidate(finish_reason=genai_types.FinishReason.SAFETY)]
    )
    result = from_google_response(unsafe, requested_model="g", turn=0, attempts=1)
    assert result.stop_reason is StopReason.CONTENT_FILTER
    assert result.message.parts == ()


def test_answers_the_neutral_model_cannot_hold_are_response_errors() -> None:
    nameless = completion(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "", "arguments": ""}}
            ],
        },
        "tool_calls",
    )
    with (
        pytest.raises(ModelResponseError, match=r"unusable answer from openai-compatible: .*name"),
        unusable_answers("openai-compatible"),
    ):
        from_openai_completion(nameless, provider="openai-compatible", turn=0, attempts=1)
