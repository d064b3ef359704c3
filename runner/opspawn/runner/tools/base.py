"""What a tool is: a definition the model sees, a time limit, and an async call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as offered to the model."""

    name: str
    """Name the model calls it by (MCP tools: <server>__<tool>)."""
    description: str
    """What the tool does, for the model."""
    input_schema: Mapping[str, Any]
    """JSON Schema (an object schema) of the arguments; calls are validated against it."""


@dataclass(frozen=True)
class ToolResult:
    """What the model gets back from a call."""

    content: str
    """Result text (or the error message)."""
    is_error: bool = False
    """True when the call was refused or failed; the model sees the error and may recover."""


class ToolError(Exception):
    """A failure a tool reports to the model: the message becomes an error result."""


class Tool(Protocol):
    """A callable tool. `call` gets arguments already validated against the input schema."""

    @property
    def definition(self) -> ToolDefinition: ...

    @property
    def timeout_seconds(self) -> float: ...

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult: ...
