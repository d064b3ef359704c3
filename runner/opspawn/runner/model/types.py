"""The provider-neutral conversation model every adapter speaks.

A conversation is a list of `Message`s. Each message has a role and an ordered tuple of parts,
as the providers themselves model it:

- `TextPart`: text written by the user, the system or the model;
- `ThinkingPart`: the model's reasoning (Anthropic thinking blocks, Gemini thought parts), kept
  only so that it can be sent back unchanged;
- `ToolCall`: the model asks for a tool (assistant messages only);
- `ToolResult`: the outcome of a tool call (tool messages only).

`signature` fields hold opaque provider tokens (Anthropic thinking signatures, Gemini thought
signatures) that the provider requires back verbatim on the next turn. Adapters fill them from
responses and replay them from history; callers just keep the assistant message as returned.

All models are immutable pydantic models, so a conversation can be serialised for events and
the audit trail with `model_dump(mode="json")` and read back with `model_validate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    """Base of the conversation models: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class TextPart(Frozen):
    type: Literal["text"] = "text"
    text: str
    signature: str | None = None
    """Opaque provider token attached to this text (Gemini thought signature)."""


class ThinkingPart(Frozen):
    type: Literal["thinking"] = "thinking"
    text: str = ""
    """The reasoning text the provider chose to return (may be a summary, or empty)."""
    signature: str | None = None
    """Opaque provider token: an Anthropic thinking signature, the data of a redacted thinking
    block, or a Gemini thought signature."""
    redacted: bool = False
    """An Anthropic redacted thinking block; its encrypted content is in `signature`."""


class ToolCall(Frozen):
    type: Literal["tool_call"] = "tool_call"
    id: str = Field(min_length=1)
    """Call id, unique within the conversation; the matching `ToolResult.call_id` repeats it."""
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments as a JSON object. Empty when the model's arguments were not a JSON object."""
    malformed_arguments: str | None = None
    """The model's arguments text, when it was not a JSON object; the caller should answer
    the call with an error result rather than run the tool."""
    signature: str | None = None
    """Opaque provider token attached to this call (Gemini thought signature)."""


class ToolResult(Frozen):
    type: Literal["tool_result"] = "tool_result"
    call_id: str = Field(min_length=1)
    """Id of the `ToolCall` this answers."""
    name: str = Field(min_length=1)
    """Name of the tool that was called (Gemini matches results to calls by name)."""
    content: str
    """Tool output, or the error message when `is_error` is set."""
    is_error: bool = False


Part = Annotated[TextPart | ThinkingPart | ToolCall | ToolResult, Field(discriminator="type")]

_ALLOWED_PARTS: dict[Role, tuple[type[BaseModel], ...]] = {
    Role.SYSTEM: (TextPart,),
    Role.USER: (TextPart,),
    Role.ASSISTANT: (TextPart, ThinkingPart, ToolCall),
    Role.TOOL: (ToolResult,),
}


class Message(Frozen):
    """One turn of the conversation."""

    role: Role
    parts: tuple[Part, ...]

    @model_validator(mode="after")
    def _parts_fit_role(self) -> Self:
        allowed = _ALLOWED_PARTS[self.role]
        for part in self.parts:
            if not isinstance(part, allowed):
                raise ValueError(f"a {self.role} message cannot hold a {part.type} part")
        return self

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role=Role.SYSTEM, parts=(TextPart(text=text),))

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role=Role.USER, parts=(TextPart(text=text),))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls(role=Role.ASSISTANT, parts=(TextPart(text=text),))

    @classmethod
    def tool(cls, results: Iterable[ToolResult]) -> Message:
        """The results of the tool calls of one assistant turn, in one message."""
        return cls(role=Role.TOOL, parts=tuple(results))

    @property
    def text(self) -> str:
        """The text parts joined (thinking excluded)."""
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(part for part in self.parts if isinstance(part, ToolCall))

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        return tuple(part for part in self.parts if isinstance(part, ToolResult))


def system_text(messages: Iterable[Message]) -> str:
    """The system messages' text, for providers that take the system prompt apart."""
    return "\n\n".join(m.text for m in messages if m.role is Role.SYSTEM)


def assistant_turns(messages: Iterable[Message]) -> int:
    """How many model answers the conversation holds (numbers the ids adapters make up)."""
    return sum(1 for message in messages if message.role is Role.ASSISTANT)


class ToolSpec(Frozen):
    """A tool offered to the model."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    """Tool name; the pattern is the one all three providers accept."""
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments (an object schema)."""


class StopReason(StrEnum):
    END_TURN = "end_turn"
    """The model finished its answer."""
    TOOL_CALLS = "tool_calls"
    """The model asks for tool calls."""
    MAX_TOKENS = "max_tokens"
    """The answer was cut at the output-token limit."""
    CONTENT_FILTER = "content_filter"
    """The provider withheld or cut the answer (safety, refusal, recitation)."""
    OTHER = "other"


class TokenUsage(Frozen):
    """Tokens of one or more model calls, normalised across providers.

    `input_tokens` includes cached and cache-written prompt tokens; `output_tokens` includes
    reasoning tokens. `cached_tokens` and `reasoning_tokens` are the parts of those totals that
    the provider reported separately.
    """

    input_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class ModelResponse(Frozen):
    """What one `ModelClient.complete` call returns."""

    message: Message
    """The assistant turn, ready to append to the conversation as is."""
    stop_reason: StopReason
    raw_stop_reason: str | None = None
    """The provider's own stop/finish reason, for the record."""
    usage: TokenUsage
    model: str
    """The model that answered, as the provider reports it (may be a dated snapshot)."""
    attempts: int = Field(default=1, ge=1)
    """HTTP attempts made, retries included."""
