"""Anthropic Messages (`POST /v1/messages`) in the fake server."""

from __future__ import annotations

import base64
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

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicWire:
    provider = "anthropic"

    def parse(self, body: Any, *, model: str | None, issued: Set[str]) -> ParsedRequest:
        messages = require_list(body, "messages")
        if not isinstance(body.get("model"), str):
            raise WireError("model: Field required")
        if not isinstance(body.get("max_tokens"), int):
            raise WireError("max_tokens: Field required")
        _check_turns(messages, issued)
        tools = tuple(
            OfferedTool(tool["name"], tool.get("input_schema") or {})
            for tool in body.get("tools") or []
        )
        output_format = (body.get("output_config") or {}).get("format") or {}
        schema = output_format.get("schema") if output_format.get("type") == "json_schema" else None
        return ParsedRequest(
            model=body["model"],
            assistant_turns=sum(1 for m in messages if m.get("role") == "assistant"),
            tools=tools,
            output_schema=schema,
        )

    def render(self, reply: Reply, *, model: str, serial: int) -> Rendered:
        content: list[dict[str, Any]] = []
        signatures: list[str] = []
        if reply.thinking is not None:
            signature = base64.b64encode(f"fake-thinking:{serial}".encode()).decode()
            signatures.append(signature)
            content.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        content.extend(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_{reply.turn}_{index}",
                "name": call.name,
                "input": call.arguments,
            }
            for index, call in enumerate(reply.calls)
        )
        usage = reply.usage
        body = {
            "id": f"msg_fake_{serial}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if reply.calls else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.input_tokens - usage.cached_tokens,
                "cache_read_input_tokens": usage.cached_tokens,
                "cache_creation_input_tokens": 0,
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"thinking_tokens": usage.reasoning_tokens},
            },
        }
        return Rendered(body, tuple(signatures))

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error_type = ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}}


def _check_turns(messages: list[Any], issued: Set[str]) -> None:
    """Tool uses must be answered by tool results in the next user turn, results must answer
    the previous turn's tool uses, and thinking must come back with its signature."""
    expected: set[str] = set()
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        blocks = _blocks(message.get("content") if isinstance(message, dict) else None)
        if role == "assistant":
            if expected:
                raise WireError(f"tool_use ids without tool_result blocks: {sorted(expected)}")
            for block in blocks:
                if block.get("type") == "thinking" and block.get("signature") not in issued:
                    raise WireError("thinking block with an invalid signature")
                if block.get("type") == "redacted_thinking" and block.get("data") not in issued:
                    raise WireError("redacted_thinking block with invalid data")
            expected = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        elif role == "user":
            answered = {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}
            if answered - expected:
                raise WireError(
                    f"tool_result blocks for unknown tool_use ids: {sorted(answered - expected)}"
                )
            if expected - answered:
                raise WireError(f"tool_use ids without tool_result blocks: {sorted(expected)}")
            expected = set()
        else:
            raise WireError(f"messages: unexpected role {role!r}")
    if expected:
        raise WireError(f"tool_use ids without tool_result blocks: {sorted(expected)}")


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    raise WireError("messages: content must be a string or an array of blocks")
