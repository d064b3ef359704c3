"""Gemini API (`POST /v1/models/{model}:generateContent`, also under v1beta) in the fake
server.

Like the real API, the first function call of a model turn carries a thought signature, and a
request whose history drops or alters one is refused. Function calls carry ids only when the
script gives one (the Gemini API often sends none).
"""

from __future__ import annotations

import base64
from collections import Counter
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

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GoogleWire:
    provider = "google"

    def parse(self, body: Any, *, model: str | None, issued: Set[str]) -> ParsedRequest:
        contents = require_list(body, "contents")
        _check_turns(contents, issued)
        tools = tuple(
            OfferedTool(declaration["name"], _parameters(declaration))
            for tool in body.get("tools") or []
            for declaration in tool.get("functionDeclarations") or []
        )
        config = body.get("generationConfig") or {}
        schema = None
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        return ParsedRequest(
            model=model or "",
            assistant_turns=sum(1 for c in contents if c.get("role") == "model"),
            tools=tools,
            output_schema=schema,
        )

    def render(self, reply: Reply, *, model: str, serial: int) -> Rendered:
        parts: list[dict[str, Any]] = []
        signatures: list[str] = []
        if reply.thinking is not None:
            parts.append({"text": reply.thinking, "thought": True})
        if reply.text:
            parts.append({"text": reply.text})
        for index, call in enumerate(reply.calls):
            function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
            if call.id is not None:
                function_call["id"] = call.id
            part: dict[str, Any] = {"functionCall": function_call}
            signature = call.signature
            if signature is None and index == 0:
                signature = base64.b64encode(f"fake-signature:{serial}".encode()).decode()
            if signature is not None:
                part["thoughtSignature"] = signature
                signatures.append(signature)
            parts.append(part)
        usage = reply.usage
        body = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": usage.input_tokens,
                "cachedContentTokenCount": usage.cached_tokens,
                "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
                "thoughtsTokenCount": usage.reasoning_tokens,
                "totalTokenCount": usage.input_tokens + usage.output_tokens,
            },
            "modelVersion": model,
            "responseId": f"fake-{serial}",
        }
        return Rendered(body, tuple(signatures))

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"),
            }
        }


def _parameters(declaration: dict[str, Any]) -> dict[str, Any]:
    """The parameter schema of a function declaration. Like the real API (protobuf JSON), the
    fake accepts field names in camelCase and in snake_case, which the SDK sends for some."""
    for key in ("parametersJsonSchema", "parameters_json_schema", "parameters"):
        if isinstance(declaration.get(key), dict):
            return dict(declaration[key])
    return {}


def _check_turns(contents: list[Any], issued: Set[str]) -> None:
    """Function calls must be answered by as many function responses (same names, same ids
    when ids are used) in the next user turn, and the first call of each model turn must
    come back with the thought signature it was given."""
    expected: list[dict[str, Any]] = []
    for content in contents:
        if not isinstance(content, dict):
            raise WireError("contents: each item must be an object")
        role = content.get("role")
        parts = [part for part in content.get("parts") or [] if isinstance(part, dict)]
        if role == "model":
            if expected:
                raise WireError("function calls without function responses")
            expected = [part["functionCall"] for part in parts if "functionCall" in part]
            calls = [part for part in parts if "functionCall" in part]
            if calls and calls[0].get("thoughtSignature") not in issued:
                raise WireError(
                    "function call is missing its thought signature "
                    f"(function {calls[0]['functionCall'].get('name')!r})"
                )
        elif role == "user":
            responses = [part["functionResponse"] for part in parts if "functionResponse" in part]
            if responses or expected:
                _check_answers(expected, responses)
            expected = []
        else:
            raise WireError(f"contents: unexpected role {role!r}")
    if expected:
        raise WireError("function calls without function responses")


def _check_answers(calls: list[dict[str, Any]], responses: list[dict[str, Any]]) -> None:
    if Counter(c.get("name") for c in calls) != Counter(r.get("name") for r in responses):
        raise WireError(
            "function responses must answer the function calls of the previous turn "
            f"(calls {[c.get('name') for c in calls]}, "
            f"responses {[r.get('name') for r in responses]})"
        )
    call_ids = {c["id"] for c in calls if "id" in c}
    response_ids = {r["id"] for r in responses if "id" in r}
    if call_ids != response_ids:
        raise WireError(f"function response ids {response_ids} do not match calls {call_ids}")
