"""Anthropic Messages API.

System messages become the top-level `system` prompt; tool results travel as `tool_result`
blocks of a user turn, consecutive user-side messages are merged into one turn, and thinking
blocks are replayed with their signatures. Recent SDK majors no longer take temperature and
top_p as arguments of `messages.create`: they go in `extra_body`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anthropic
from anthropic.types import (
    Message as AnthropicMessage,
)
from anthropic.types import (
    MessageParam,
    OutputConfigParam,
    RedactedThinkingBlock,
    RedactedThinkingBlockParam,
    TextBlock,
    TextBlockParam,
    ThinkingBlock,
    ThinkingBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
)

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import SDKErrorTypes, translate_sdk_error, unusable_answers
from opspawn.runner.model.retry import RetryPolicy, call_with_retries
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
    system_text,
)
from opspawn.runner.model.usage import from_anthropic

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
SDK_ERRORS = SDKErrorTypes(
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
    status=anthropic.APIStatusError,
)
DEFAULT_MAX_TOKENS = 4096
"""The Messages API requires a bound on output tokens; used when the spec sets none."""

ContentParam = (
    TextBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
)

_STOP_REASONS = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.END_TURN,
    "tool_use": StopReason.TOOL_CALLS,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "refusal": StopReason.CONTENT_FILTER,
}


class AnthropicClient:
    """`ModelClient` over the Anthropic Messages API."""

    provider = "anthropic"

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
        self._sdk = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or ANTHROPIC_BASE_URL,
            max_retries=0,
            timeout=retry.call_timeout,
            # Explicit endpoint above; no proxy, CA or netrc from the environment.
            http_client=anthropic.DefaultAsyncHttpxClient(trust_env=False),
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
        wire_messages = to_anthropic_messages(messages)
        wire_tools = [to_anthropic_tool(tool) for tool in tools]
        output_config: OutputConfigParam | None = (
            {"format": {"type": "json_schema", "schema": dict(output_schema)}}
            if output_schema is not None
            else None
        )
        sampling = self._sampling
        extra_body = {
            name: value
            for name, value in (("temperature", sampling.temperature), ("top_p", sampling.top_p))
            if value is not None
        }

        async def attempt(time_limit: float) -> AnthropicMessage:
            try:
                return await self._sdk.messages.create(
                    model=self.model,
                    max_tokens=sampling.max_output_tokens or DEFAULT_MAX_TOKENS,
                    messages=wire_messages,
                    system=system or anthropic.omit,
                    tools=wire_tools or anthropic.omit,
                    output_config=output_config or anthropic.omit,
                    extra_body=extra_body or None,
                    timeout=time_limit,
                )
            except anthropic.AnthropicError as error:
                raise translate_sdk_error(
                    error, SDK_ERRORS, provider=self.provider, api_key=self._api_key
                ) from None

        result = await call_with_retries(
            attempt, provider=self.provider, policy=self._retry, deadline=deadline
        )
        with unusable_answers(self.provider):
            return from_anthropic_message(result.value, attempts=result.attempts)

    async def aclose(self) -> None:
        await self._sdk.close()


def to_anthropic_messages(messages: Sequence[Message]) -> list[MessageParam]:
    """User and assistant turns; system messages are left out (they form `system`)."""
    turns: list[tuple[str, list[ContentParam]]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    wire: list[MessageParam] = []
    for role, blocks in turns:
        if role == "assistant":
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": "user", "content": blocks})
    return wire


def _blocks(message: Message) -> list[ContentParam]:
    return [block for part in message.parts if (block := _block(part)) is not None]


def _block(part: TextPart | ThinkingPart | ToolCall | ToolResult) -> ContentParam | None:
    if isinstance(part, TextPart):
        return TextBlockParam(type="text", text=part.text) if part.text else None
    if isinstance(part, ThinkingPart):
        # Thinking without a signature came from another provider: Anthropic refuses it.
        if part.signature is None:
            return None
        if part.redacted:
            return RedactedThinkingBlockParam(type="redacted_thinking", data=part.signature)
        return ThinkingBlockParam(type="thinking", thinking=part.text, signature=part.signature)
    if isinstance(part, ToolCall):
        return ToolUseBlockParam(type="tool_use", id=part.id, name=part.name, input=part.arguments)
    return ToolResultBlockParam(
        type="tool_result", tool_use_id=part.call_id, content=part.content, is_error=part.is_error
    )


def to_anthropic_tool(tool: ToolSpec) -> ToolParam:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def from_anthropic_message(answer: AnthropicMessage, *, attempts: int) -> ModelResponse:
    parts: list[TextPart | ThinkingPart | ToolCall] = []
    for block in answer.content:
        if isinstance(block, TextBlock):
            parts.append(TextPart(text=block.text))
        elif isinstance(block, ThinkingBlock):
            parts.append(ThinkingPart(text=block.thinking, signature=block.signature))
        elif isinstance(block, RedactedThinkingBlock):
            parts.append(ThinkingPart(signature=block.data, redacted=True))
        elif isinstance(block, ToolUseBlock):
            parts.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
    message = Message(role=Role.ASSISTANT, parts=tuple(parts))
    raw = answer.stop_reason
    stop = (
        StopReason.TOOL_CALLS
        if message.tool_calls
        else _STOP_REASONS.get(raw or "", StopReason.OTHER)
    )
    return ModelResponse(
        message=message,
        stop_reason=stop,
        raw_stop_reason=raw,
        usage=from_anthropic(answer.usage),
        model=str(answer.model),
        attempts=attempts,
    )
