"""Resolving a scripted turn against the request it answers."""

from __future__ import annotations

import json

from opspawn.fakes.schema_sample import sample_arguments, sample_instance
from opspawn.fakes.script import FIRST_OFFERED_TOOL, ScriptedCall, ScriptedUsage, Turn
from opspawn.fakes.wire import ParsedRequest, Reply, ReplyCall, ReplyUsage

BYTES_PER_TOKEN = 4
"""Rough size of a token, for usage counts the script does not fix."""


def build_reply(turn: Turn, request: ParsedRequest, *, request_bytes: int) -> Reply:
    """The answer `turn` gives to `request`.

    "*" calls go to the first tool offered (dropped when none is); calls without arguments get
    a sample that fits the tool's schema. A turn without calls answers `json` as JSON text, a
    sample of the requested schema when the request asks for structured output, or its text.
    """
    calls = tuple(call for scripted in turn.tool_calls if (call := _call(scripted, request)))
    if calls:
        text = turn.text
    elif turn.json_value is not None:
        text = json.dumps(turn.json_value)
    elif request.output_schema is not None:
        text = json.dumps(sample_instance(request.output_schema))
    else:
        text = turn.text or ""
    written = (text or "") + "".join(json.dumps(call.arguments) for call in calls)
    scripted = turn.usage or ScriptedUsage()
    usage = ReplyUsage(
        input_tokens=_given(scripted.input_tokens, request_bytes // BYTES_PER_TOKEN),
        output_tokens=_given(scripted.output_tokens, len(written) // BYTES_PER_TOKEN),
        cached_tokens=scripted.cached_tokens,
        reasoning_tokens=scripted.reasoning_tokens,
    )
    return Reply(
        turn=request.assistant_turns,
        text=text,
        usage=usage,
        thinking=turn.thinking,
        calls=calls,
        tools_offered=bool(request.tools),
    )


def _call(scripted: ScriptedCall, request: ParsedRequest) -> ReplyCall | None:
    offered = {tool.name: tool for tool in request.tools}
    name = scripted.name
    if name == FIRST_OFFERED_TOOL:
        if not request.tools:
            return None
        name = request.tools[0].name
    arguments = scripted.arguments
    if arguments is None:
        tool = offered.get(name)
        arguments = sample_arguments(tool.parameters) if tool else {}
    return ReplyCall(name=name, arguments=arguments, id=scripted.id, signature=scripted.signature)


def _given(value: int | None, fallback: int) -> int:
    return max(1, fallback) if value is None else value
