"""OpenAI Chat Completions (`POST /v1/chat/completions`) in the fake server.

A request that offers no native tools gets its tool calls as ReAct text (Thought / Action /
Action Input), the way a model without native tool calling follows a ReAct system prompt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Set
from typing import Any

from opspawn.fakes.wire import (
    OfferedTool,
    ParsedRequest,
    Rendered,
    Reply,
    WireError,
    require_list,
)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}


class OpenAIWire:
    provider = "openai"

    def parse(self, body: Any, *, model: str | None, issued: Set[str]) -> ParsedRequest:
        messages = require_list(body, "messages")
        if not isinstance(body.get("model"), str):
            raise WireError("model is required")
        _check_tool_answers(messages)
        tools = tuple(
            OfferedTool(tool["function"]["name"], tool["function"].get("parameters") or {})
            for tool in body.get("tools") or []
            if tool.get("type") == "function"
        )
        return ParsedRequest(
            model=body["model"],
            assistant_turns=sum(1 for m in messages if m.get("role") == "assistant"),
            tools=tools,
            output_schema=_output_schema(body.get("response_format")),
        )

    def render(self, reply: Reply, *, model: str, serial: int) -> Rendered:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.calls and not reply.tools_offered:
            message["content"] = _react_text(reply)
        elif reply.calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{reply.turn}_{index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for index, call in enumerate(reply.calls)
            ]
        usage = reply.usage
        return Rendered(
            {
                "id": f"chatcmpl-fake-{serial}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.input_tokens + usage.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
                    "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
                },
            }
        )

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
        return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def _react_text(reply: Reply) -> str:
    lines = [f"Thought: {reply.thinking or 'I will use tools.'}"]
    for call in reply.calls:
        lines += [f"Action: {call.name}", f"Action Input: {json.dumps(call.arguments)}"]
    return "\n".join(lines)


def _output_schema(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def _check_tool_answers(messages: list[Any]) -> None:
    """Every tool call of an assistant message must be answered by the tool messages right
    after it, and every tool message must answer one of those calls."""
    pending: set[str] = set()
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise WireError(f"tool message answers unknown tool_call_id {call_id!r}")
            pending.discard(call_id)
            continue
        if pending:
            raise WireError(f"tool calls without a tool message: {sorted(pending)}")
        if role == "assistant":
            pending = {call["id"] for call in message.get("tool_calls") or []}
        elif role not in ("system", "developer", "user"):
            raise WireError(f"unknown message role {role!r}")
    if pending:
        raise WireError(f"tool calls without a tool message: {sorted(pending)}")
