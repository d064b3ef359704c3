"""What the three wire formats have in common inside the fake server."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any, Protocol


class WireError(Exception):
    """The request is malformed for its API: answered with HTTP 400 and this message."""


@dataclass(frozen=True)
class OfferedTool:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ParsedRequest:
    """What the fake needs to know about a request to answer it."""

    model: str
    assistant_turns: int
    """Model answers already in the conversation: selects the script turn."""
    tools: tuple[OfferedTool, ...] = ()
    output_schema: dict[str, Any] | None = None
    """The JSON Schema the request asks the answer to match, if any."""


@dataclass(frozen=True)
class ReplyCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None
    signature: str | None = None


@dataclass(frozen=True)
class ReplyUsage:
    """Neutral token counts: input includes cached, output includes reasoning."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """A scripted turn resolved against one request, before it is put in wire form."""

    turn: int
    """Index of the conversation turn (the request's assistant turns)."""
    text: str | None
    usage: ReplyUsage
    thinking: str | None = None
    calls: tuple[ReplyCall, ...] = field(default=())
    tools_offered: bool = True
    """Whether the request offered native tools (the OpenAI wire falls back to ReAct text)."""


@dataclass(frozen=True)
class Rendered:
    body: dict[str, Any]
    signatures: tuple[str, ...] = ()
    """Opaque signatures handed out in this reply; later requests must send them back."""


class Wire(Protocol):
    """One provider's request and response format."""

    provider: str

    def parse(self, body: Any, *, model: str | None, issued: Set[str]) -> ParsedRequest:
        """Read and check a request (`model` comes from the URL where the API puts it there);
        raises `WireError` when a real provider would refuse it."""
        ...

    def render(self, reply: Reply, *, model: str, serial: int) -> Rendered:
        """The successful response body; `serial` numbers responses for unique ids."""
        ...

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The provider's error body for an HTTP error status."""
        ...


def require_list(body: Any, key: str) -> list[Any]:
    """`body[key]` as a non-empty list, or a `WireError`."""
    if not isinstance(body, dict):
        raise WireError("the request body must be a JSON object")
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise WireError(f"{key} must be a non-empty array")
    return value
