"""ReAct: tool calling as a text protocol, for openai-compatible models without native tools.

The tools and the protocol are described in the system prompt. The model answers either with
actions (several allowed in one turn):

    Thought: I need the time and a sum.
    Action: current_time
    Action Input: {}
    Action: calculator
    Action Input: {"expression": "6*7"}

or with the final answer:

    Thought: I know it now.
    Final Answer: 42

Tool results go back as a user message of `Observation` lines naming each call's id. Earlier
assistant turns are re-rendered in the protocol from their parts, so the conversation stays in
the neutral model like every other provider's. A reply that follows neither form is taken as
the final answer as a whole; an Action Input that is not a JSON object becomes a call with
`malformed_arguments`, to be answered with an error observation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import unusable_answers
from opspawn.runner.model.openai import OpenAIChatBacked, parse_tool_call
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    Role,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    assistant_turns,
    system_text,
)
from opspawn.runner.model.usage import from_openai

STOP_SEQUENCES = ["\nObservation:"]
"""Stops a model that goes on to invent the tool results itself."""

_MARKER = re.compile(
    r"^[ \t]*(Thought|Action Input|Action|Final Answer|Observation)[ \t]*:[ \t]?",
    re.IGNORECASE | re.MULTILINE,
)
_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")

PROTOCOL = """\
You can use the tools listed below. To use tools, reply in exactly this format and stop:

Thought: <your reasoning>
Action: <tool name>
Action Input: <the arguments, as one JSON object>

You may use several tools in one reply by repeating the Action and Action Input lines. The
results come back as Observation lines. When you know the answer, reply in this format:

Thought: <your reasoning>
Final Answer: <the answer>

Tools:
"""


class ReActClient(OpenAIChatBacked):
    """`ModelClient` speaking the ReAct text protocol over Chat Completions."""

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        result = await self._chat.create(
            to_react_messages(messages, tools, output_schema),
            tools=[],
            response_format=None,
            stop=STOP_SEQUENCES,
            deadline=deadline,
        )
        completion = result.value
        text = completion.choices[0].message.content if completion.choices else None
        turn = assistant_turns(messages)
        with unusable_answers(self.provider):
            message = parse_react(text or "", turn=turn)
        finish = completion.choices[0].finish_reason if completion.choices else None
        if message.tool_calls:
            stop = StopReason.TOOL_CALLS
        elif finish == "length":
            stop = StopReason.MAX_TOKENS
        else:
            stop = StopReason.END_TURN
        return ModelResponse(
            message=message,
            stop_reason=stop,
            raw_stop_reason=finish,
            usage=from_openai(completion.usage),
            model=completion.model or self.model,
            attempts=result.attempts,
        )


def system_prompt(
    system: str, tools: Sequence[ToolSpec], output_schema: Mapping[str, Any] | None
) -> str:
    """The caller's system text followed by the protocol, the tools and the output format."""
    sections = [system] if system else []
    if tools:
        described = "\n".join(
            f"- {tool.name}: {tool.description}\n"
            f"  arguments (JSON Schema): {json.dumps(tool.parameters, ensure_ascii=False)}"
            for tool in tools
        )
        sections.append(PROTOCOL + described)
    if output_schema is not None:
        sections.append(
            "The Final Answer must be a single JSON value (no other text) matching this JSON "
            f"Schema: {json.dumps(output_schema, ensure_ascii=False)}"
        )
    return "\n\n".join(sections)


def to_react_messages(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    output_schema: Mapping[str, Any] | None,
) -> list[ChatCompletionMessageParam]:
    system = system_text(messages)
    prompt = system_prompt(system, tools, output_schema)
    wire: list[ChatCompletionMessageParam] = []
    if prompt:
        wire.append({"role": "system", "content": prompt})
    for message in messages:
        if message.role is Role.USER:
            wire.append({"role": "user", "content": message.text})
        elif message.role is Role.ASSISTANT:
            wire.append({"role": "assistant", "content": render_assistant(message)})
        elif message.role is Role.TOOL:
            wire.append({"role": "user", "content": render_observations(message)})
    return wire


def render_assistant(message: Message) -> str:
    """An assistant turn in the protocol (text next to tool calls counts as thought)."""
    thoughts = [p.text for p in message.parts if isinstance(p, ThinkingPart) and p.text]
    calls = message.tool_calls
    if calls and message.text:
        thoughts.append(message.text)
    lines = [f"Thought: {' '.join(thoughts)}"] if thoughts else []
    for call in calls:
        arguments = (
            call.malformed_arguments
            if call.malformed_arguments is not None
            else json.dumps(call.arguments, ensure_ascii=False)
        )
        lines += [f"Action: {call.name}", f"Action Input: {arguments}"]
    if not calls:
        lines.append(f"Final Answer: {message.text}")
    return "\n".join(lines)


def render_observations(message: Message) -> str:
    return "\n".join(
        f"Observation ({result.name}, call {result.call_id})"
        f"{' ERROR' if result.is_error else ''}: {result.content}"
        for result in message.tool_results
    )


def parse_react(text: str, *, turn: int) -> Message:
    """The assistant turn a ReAct reply stands for; `turn` numbers the call ids."""
    fields = _fields(text)
    if not fields:
        return Message.assistant(text.strip())
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    pending_action: str | None = None
    for name, value in fields:
        if name == "observation":
            break
        if name == "thought":
            thoughts.append(value)
        elif name == "action":
            if pending_action is not None:
                calls.append(_call(turn, len(calls), pending_action, ""))
            pending_action = value or None
        elif name == "action input" and pending_action is not None:
            calls.append(_call(turn, len(calls), pending_action, value))
            pending_action = None
        elif name == "final answer" and not calls and pending_action is None:
            return _message(thoughts, [TextPart(text=value)])
    if pending_action is not None:
        calls.append(_call(turn, len(calls), pending_action, ""))
    if calls:
        return _message(thoughts, calls)
    return Message.assistant(text.strip())


def _fields(text: str) -> list[tuple[str, str]]:
    """(marker, value) pairs in order; a value runs until the next marker."""
    matches = list(_MARKER.finditer(text))
    fields = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        fields.append((match.group(1).lower(), text[match.end() : end].strip()))
    return fields


def _call(turn: int, index: int, name: str, arguments: str) -> ToolCall:
    return parse_tool_call(f"react_{turn}_{index}", name.strip(), _CODE_FENCE.sub("", arguments))


def _message(thoughts: list[str], parts: Sequence[TextPart | ToolCall]) -> Message:
    thinking = [ThinkingPart(text="\n".join(thoughts))] if thoughts else []
    return Message(role=Role.ASSISTANT, parts=(*thinking, *parts))
