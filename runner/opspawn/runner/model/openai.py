"""OpenAI Chat Completions, for provider openai and for openai-compatible servers.

`OpenAIChat` owns the SDK client: it sends one Chat Completions request through the retry
layer and translates SDK errors. `OpenAIChatClient` is the `ModelClient` with native tool
calling on top of it; the ReAct client (`react.py`) reuses `OpenAIChat` for its text protocol.
Both derive from `OpenAIChatBacked`, which holds the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionAssistantMessageParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
    ChatCompletionToolMessageParam,
)
from openai.types.chat.completion_create_params import ResponseFormat

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import (
    ModelResponseError,
    SDKErrorTypes,
    translate_sdk_error,
    unusable_answers,
)
from opspawn.runner.model.retry import Retried, RetryPolicy, call_with_retries
from opspawn.runner.model.settings import Sampling
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    Role,
    StopReason,
    TextPart,
    ToolCall,
    ToolSpec,
    assistant_turns,
)
from opspawn.runner.model.usage import from_openai

T = TypeVar("T")

OPENAI_BASE_URL = "https://api.openai.com/v1"
OUTPUT_SCHEMA_NAME = "result"
SDK_ERRORS = SDKErrorTypes(
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
    status=openai.APIStatusError,
)
TOOL_ERROR_PREFIX = "Error: "
"""Chat Completions has no error flag on tool results: errors are marked in the text."""

_STOP_REASONS = {
    "stop": StopReason.END_TURN,
    "tool_calls": StopReason.TOOL_CALLS,
    "function_call": StopReason.TOOL_CALLS,
    "length": StopReason.MAX_TOKENS,
    "content_filter": StopReason.CONTENT_FILTER,
}


class OpenAIChat:
    """One Chat Completions endpoint: the SDK client, retries and error translation."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        api_key: str,
        base_url: str | None,
        sampling: Sampling,
        retry: RetryPolicy,
    ) -> None:
        self.provider = provider
        self.model = model
        self._api_key = api_key
        self._sampling = sampling
        self._retry = retry
        self._sdk = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or OPENAI_BASE_URL,
            max_retries=0,
            timeout=retry.call_timeout,
            # Explicit endpoint above; no proxy, CA or netrc from the environment.
            http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
        )

    async def create(
        self,
        messages: list[ChatCompletionMessageParam],
        *,
        tools: list[ChatCompletionFunctionToolParam],
        response_format: ResponseFormat | None,
        stop: list[str] | None,
        deadline: Deadline,
    ) -> Retried[ChatCompletion]:
        """One completion, retried on transient failures."""
        sampling = self._sampling
        # openai takes max_completion_tokens; many compatible servers only know max_tokens.
        max_tokens_field = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
        extra_body: dict[str, Any] = {}
        if sampling.max_output_tokens is not None:
            extra_body[max_tokens_field] = sampling.max_output_tokens

        async def attempt(time_limit: float) -> ChatCompletion:
            try:
                return await self._sdk.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    tools=tools or openai.omit,
                    response_format=response_format or openai.omit,
                    stop=stop or openai.omit,
                    temperature=_given(sampling.temperature),
                    top_p=_given(sampling.top_p),
                    extra_body=extra_body or None,
                    timeout=time_limit,
                )
            except openai.OpenAIError as error:
                raise translate_sdk_error(
                    error, SDK_ERRORS, provider=self.provider, api_key=self._api_key
                ) from None

        return await call_with_retries(
            attempt, provider=self.provider, policy=self._retry, deadline=deadline
        )

    async def aclose(self) -> None:
        await self._sdk.close()


class OpenAIChatBacked:
    """Base of the `ModelClient`s built on one `OpenAIChat`: provider, model and closing are
    the endpoint's."""

    def __init__(self, chat: OpenAIChat) -> None:
        self._chat = chat

    @property
    def provider(self) -> str:
        return self._chat.provider

    @property
    def model(self) -> str:
        return self._chat.model

    async def aclose(self) -> None:
        await self._chat.aclose()


class OpenAIChatClient(OpenAIChatBacked):
    """`ModelClient` over Chat Completions with native tool calling."""

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        result = await self._chat.create(
            to_openai_messages(messages),
            tools=[to_openai_tool(tool) for tool in tools],
            response_format=response_format_for(output_schema),
            stop=None,
            deadline=deadline,
        )
        turn = assistant_turns(messages)
        with unusable_answers(self.provider):
            return from_openai_completion(
                result.value, provider=self.provider, turn=turn, attempts=result.attempts
            )


def to_openai_messages(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """The conversation in Chat Completions form (thinking parts have no place there)."""
    wire: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            wire.append({"role": "system", "content": message.text})
        elif message.role is Role.USER:
            wire.append({"role": "user", "content": message.text})
        elif message.role is Role.ASSISTANT:
            wire.append(_assistant_message(message))
        else:
            wire.extend(
                ChatCompletionToolMessageParam(
                    role="tool",
                    tool_call_id=result.call_id,
                    content=(TOOL_ERROR_PREFIX + result.content)
                    if result.is_error
                    else result.content,
                )
                for result in message.tool_results
            )
    return wire


def _assistant_message(message: Message) -> ChatCompletionAssistantMessageParam:
    out = ChatCompletionAssistantMessageParam(role="assistant", content=message.text or None)
    calls = [
        ChatCompletionMessageFunctionToolCallParam(
            id=call.id,
            type="function",
            function={"name": call.name, "arguments": _arguments_text(call)},
        )
        for call in message.tool_calls
    ]
    if calls:
        out["tool_calls"] = calls
    elif not message.text:
        out["content"] = ""
    return out


def _arguments_text(call: ToolCall) -> str:
    if call.malformed_arguments is not None:
        return call.malformed_arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def to_openai_tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def response_format_for(output_schema: Mapping[str, Any] | None) -> ResponseFormat | None:
    """JSON-schema output, not strict: strict mode only admits a subset of JSON Schema, and
    the caller validates the answer anyway."""
    if output_schema is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": OUTPUT_SCHEMA_NAME, "schema": dict(output_schema), "strict": False},
    }


def from_openai_completion(
    completion: ChatCompletion, *, provider: str, turn: int, attempts: int
) -> ModelResponse:
    """The neutral response; `turn` (assistant turns so far) makes missing call ids unique."""
    if not completion.choices:
        raise ModelResponseError(f"{provider} returned no choices", provider=provider)
    choice = completion.choices[0]
    answer = choice.message
    parts: list[TextPart | ToolCall] = []
    if answer.content:
        parts.append(TextPart(text=answer.content))
    elif answer.refusal:
        parts.append(TextPart(text=answer.refusal))
    for index, call in enumerate(answer.tool_calls or ()):
        if isinstance(call, ChatCompletionMessageFunctionToolCall):
            parts.append(
                parse_tool_call(
                    call.id or f"call_{turn}_{index}", call.function.name, call.function.arguments
                )
            )
    message = Message(role=Role.ASSISTANT, parts=tuple(parts))
    raw = choice.finish_reason
    if message.tool_calls:
        stop = StopReason.TOOL_CALLS
    elif answer.refusal and not answer.content:
        stop = StopReason.CONTENT_FILTER
    else:
        stop = _STOP_REASONS.get(raw, StopReason.OTHER)
    return ModelResponse(
        message=message,
        stop_reason=stop,
        raw_stop_reason=raw,
        usage=from_openai(completion.usage),
        model=completion.model or "",
        attempts=attempts,
    )


def parse_tool_call(call_id: str, name: str, arguments: str) -> ToolCall:
    """A tool call whose arguments arrive as JSON text, which the model may have garbled."""
    if not arguments.strip():
        return ToolCall(id=call_id, name=name, arguments={})
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return ToolCall(id=call_id, name=name, arguments=parsed)
    return ToolCall(id=call_id, name=name, malformed_arguments=arguments)


def _given(value: T | None) -> T | openai.Omit:
    return openai.omit if value is None else value
