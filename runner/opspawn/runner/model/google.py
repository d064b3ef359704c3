"""Google Gemini API through `google-genai`.

The SDK is told never to retry (the retry layer decides) and runs on an httpx2 client of our
own rather than aiohttp, whose code path sleeps and retries connection errors by itself.

Function calls may come without ids: the adapter then makes up local ids (prefixed
`LOCAL_CALL_ID_PREFIX`) and never sends them back, since Gemini matches responses to calls by
name and order. Thought signatures (bytes on the SDK's parts) are kept base64-encoded in the
neutral parts' `signature` and replayed on the same parts.

Structured output (`response_json_schema`) is requested only on calls without tools, since
Gemini 2.x refuses JSON mode combined with function calling; with tools, the caller's
validation is the only check.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import (
    ModelConnectionError,
    ModelError,
    ModelResponseError,
    ModelTimeoutError,
    error_for_status,
    redact,
    unusable_answers,
)
from opspawn.runner.model.retry import RetryPolicy, call_with_retries
from opspawn.runner.model.retry_after import parse_retry_after
from opspawn.runner.model.settings import Sampling
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    Role,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    assistant_turns,
    system_text,
)
from opspawn.runner.model.usage import from_google

LOCAL_CALL_ID_PREFIX = "opspawn-local-"
"""Ids the adapter made up for function calls that came without one."""

GOOGLE_BASE_URL = "https://generativelanguage.googleapis.com/"
"""The Gemini API, named here so that GOOGLE_GEMINI_BASE_URL in the environment is never used."""

_STOP_REASONS = {
    genai_types.FinishReason.STOP: StopReason.END_TURN,
    genai_types.FinishReason.MAX_TOKENS: StopReason.MAX_TOKENS,
    genai_types.FinishReason.SAFETY: StopReason.CONTENT_FILTER,
    genai_types.FinishReason.RECITATION: StopReason.CONTENT_FILTER,
    genai_types.FinishReason.BLOCKLIST: StopReason.CONTENT_FILTER,
    genai_types.FinishReason.PROHIBITED_CONTENT: StopReason.CONTENT_FILTER,
    genai_types.FinishReason.SPII: StopReason.CONTENT_FILTER,
}


class GoogleClient:
    """`ModelClient` over the Gemini API (`models.generateContent`)."""

    provider = "google"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        sampling: Sampling,
        retry: RetryPolicy,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._sampling = sampling
        self._retry = retry
        # Explicit endpoint below; no proxy, CA or netrc from the environment.
        self._http = httpx2.AsyncClient(trust_env=False)
        self._sdk = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=genai_types.HttpOptions(
                base_url=base_url or GOOGLE_BASE_URL,
                timeout=_milliseconds(retry.call_timeout),
                retry_options=genai_types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        system = system_text(messages)
        contents = to_google_contents(messages)
        structured = output_schema is not None and not tools

        async def attempt(time_limit: float) -> genai_types.GenerateContentResponse:
            config = genai_types.GenerateContentConfig(
                system_instruction=system or None,
                temperature=self._sampling.temperature,
                top_p=self._sampling.top_p,
                max_output_tokens=self._sampling.max_output_tokens,
                tools=[to_google_tool(tools)] if tools else None,
                automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
                response_mime_type="application/json" if structured else None,
                response_json_schema=dict(output_schema) if structured and output_schema else None,
                http_options=genai_types.HttpOptions(timeout=_milliseconds(time_limit)),
            )
            try:
                return await self._sdk.aio.models.generate_content(
                    model=self.model, contents=contents, config=config
                )
            except (genai_errors.APIError, httpx2.TransportError) as error:
                raise self._translate(error) from None

        result = await call_with_retries(
            attempt, provider=self.provider, policy=self._retry, deadline=deadline
        )
        turn = assistant_turns(messages)
        with unusable_answers(self.provider):
            return from_google_response(
                result.value, requested_model=self.model, turn=turn, attempts=result.attempts
            )

    def _translate(self, error: genai_errors.APIError | httpx2.TransportError) -> ModelError:
        provider = self.provider
        if isinstance(error, httpx2.TimeoutException):
            return ModelTimeoutError(f"{provider} did not answer in time", provider=provider)
        if isinstance(error, httpx2.TransportError):
            return ModelConnectionError(
                f"could not reach {provider}: {type(error).__name__}: "
                f"{redact(str(error), self._api_key)}",
                provider=provider,
            )
        response = error.response
        headers = getattr(response, "headers", None)
        return error_for_status(
            error.code,
            redact(error.message or str(error.status), self._api_key),
            provider=provider,
            retry_after=parse_retry_after(headers) if headers is not None else None,
        )

    async def aclose(self) -> None:
        await self._sdk.aio.aclose()
        await self._http.aclose()


def to_google_contents(messages: Sequence[Message]) -> list[genai_types.Content]:
    """User and model turns; system messages are left out (they form the system
    instruction) and consecutive turns of one role are merged."""
    contents: list[genai_types.Content] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "model" if message.role is Role.ASSISTANT else "user"
        parts = [wire for part in message.parts if (wire := _wire_part(part)) is not None]
        if not parts:
            continue
        if contents and contents[-1].role == role:
            contents[-1].parts = [*(contents[-1].parts or []), *parts]
        else:
            contents.append(genai_types.Content(role=role, parts=parts))
    return contents


def _wire_part(part: TextPart | ThinkingPart | ToolCall | ToolResult) -> genai_types.Part | None:
    if isinstance(part, TextPart):
        if not part.text and part.signature is None:
            return None
        return genai_types.Part(text=part.text, thought_signature=_decode(part.signature))
    if isinstance(part, ThinkingPart):
        if part.signature is None or part.redacted:
            return None
        return genai_types.Part(
            text=part.text, thought=True, thought_signature=_decode(part.signature)
        )
    if isinstance(part, ToolCall):
        return genai_types.Part(
            function_call=genai_types.FunctionCall(
                id=_provider_id(part.id), name=part.name, args=part.arguments
            ),
            thought_signature=_decode(part.signature),
        )
    key = "error" if part.is_error else "output"
    return genai_types.Part(
        function_response=genai_types.FunctionResponse(
            id=_provider_id(part.call_id), name=part.name, response={key: part.content}
        )
    )


def to_google_tool(tools: Sequence[ToolSpec]) -> genai_types.Tool:
    return genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name=tool.name, description=tool.description, parameters_json_schema=tool.parameters
            )
            for tool in tools
        ]
    )


def from_google_response(
    response: genai_types.GenerateContentResponse,
    *,
    requested_model: str,
    turn: int,
    attempts: int,
) -> ModelResponse:
    """The neutral response; `turn` (assistant turns so far) makes local call ids unique."""
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = feedback.block_reason if feedback else None
        raise ModelResponseError(
            f"google returned no candidates (block reason: {reason or 'none given'})",
            provider="google",
        )
    candidate = response.candidates[0]
    parts: list[TextPart | ThinkingPart | ToolCall] = []
    wire_parts = candidate.content.parts if candidate.content else None
    for index, wire in enumerate(wire_parts or ()):
        signature = _encode(wire.thought_signature)
        if wire.function_call is not None:
            call = wire.function_call
            parts.append(
                ToolCall(
                    id=call.id or f"{LOCAL_CALL_ID_PREFIX}{turn}-{index}",
                    name=call.name or "",
                    arguments=dict(call.args or {}),
                    signature=signature,
                )
            )
        elif wire.thought:
            parts.append(ThinkingPart(text=wire.text or "", signature=signature))
        elif wire.text is not None or signature is not None:
            parts.append(TextPart(text=wire.text or "", signature=signature))
    message = Message(role=Role.ASSISTANT, parts=tuple(parts))
    raw = candidate.finish_reason
    if message.tool_calls:
        stop = StopReason.TOOL_CALLS
    else:
        stop = _STOP_REASONS.get(raw, StopReason.OTHER) if raw else StopReason.END_TURN
    return ModelResponse(
        message=message,
        stop_reason=stop,
        raw_stop_reason=raw.value if raw else None,
        usage=from_google(response.usage_metadata),
        model=response.model_version or requested_model,
        attempts=attempts,
    )


def _provider_id(call_id: str) -> str | None:
    return None if call_id.startswith(LOCAL_CALL_ID_PREFIX) else call_id


def _encode(signature: bytes | None) -> str | None:
    return base64.b64encode(signature).decode("ascii") if signature else None


def _decode(signature: str | None) -> bytes | None:
    return base64.b64decode(signature) if signature else None


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
