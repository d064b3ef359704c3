"""The `remember` and `recall` tools: the model writes and searches long-term memory.

Like every built-in tool they exist only when the task lists them in `spec.tools.builtin`
(the allow-list); `memory_tool_factories` makes them for `build_registry`. When long-term
memory is unavailable the tools still exist and answer with an error the model can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from opspawn.api.agenttask import BuiltinTool, BuiltinToolName
from opspawn.runner.memory.longterm import MemoryUnavailableError
from opspawn.runner.memory.store import Memory, RecalledMemory
from opspawn.runner.tools.base import Tool, ToolDefinition, ToolError, ToolResult
from opspawn.runner.tools.builtin import BuiltinToolFactory

MAX_MEMORY_CHARS = 4000
MAX_RECALL_LIMIT = 50


class MemoryAccess(Protocol):
    """What the tools need of long-term memory (`LongTermMemory` is one)."""

    async def remember(self, text: str) -> Memory: ...

    async def recall(self, query: str, limit: int | None = None) -> list[RecalledMemory]: ...


class Unavailable:
    """Long-term memory that could not be opened: every call is an error for the model."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def remember(self, text: str) -> Memory:
        raise MemoryUnavailableError(self.reason)

    async def recall(self, query: str, limit: int | None = None) -> list[RecalledMemory]:
        raise MemoryUnavailableError(self.reason)


REMEMBER = ToolDefinition(
    name="remember",
    description=(
        "Store a fact in long-term memory, so that later tasks in this namespace can recall "
        "it. Write one self-contained statement (who, what, when), not a reference to this "
        "conversation."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_MEMORY_CHARS,
                "description": "The fact to remember.",
            }
        },
        "required": ["text"],
        "additionalProperties": False,
    },
)
RECALL = ToolDefinition(
    name="recall",
    description=(
        "Search long-term memory (facts stored by earlier tasks in this namespace) for what "
        "is relevant to a query; returns the most similar memories with their similarity."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_MEMORY_CHARS,
                "description": "What to look for, in words.",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_RECALL_LIMIT,
                "description": "How many memories at most (default: the task's topK).",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)


class Remember:
    definition = REMEMBER

    def __init__(self, memory: MemoryAccess, timeout_seconds: float) -> None:
        self._memory = memory
        self.timeout_seconds = timeout_seconds

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        try:
            memory = await self._memory.remember(str(arguments["text"]))
        except MemoryUnavailableError as error:
            raise ToolError(f"long-term memory is unavailable: {error}") from None
        if memory.expires_at is None:
            return ToolResult("Remembered.")
        expires = memory.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return ToolResult(f"Remembered until {expires}.")


class Recall:
    definition = RECALL

    def __init__(self, memory: MemoryAccess, timeout_seconds: float) -> None:
        self._memory = memory
        self.timeout_seconds = timeout_seconds

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        limit = arguments.get("limit")
        try:
            found = await self._memory.recall(
                str(arguments["query"]), int(limit) if limit is not None else None
            )
        except MemoryUnavailableError as error:
            raise ToolError(f"long-term memory is unavailable: {error}") from None
        if not found:
            return ToolResult("No relevant memories.")
        return ToolResult("\n".join(describe(item) for item in found))


def describe(item: RecalledMemory) -> str:
    """One recalled memory as the model sees it: the text with its provenance."""
    memory = item.memory
    written = memory.created_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return (
        f"- {memory.text} (similarity {item.similarity:.2f}; remembered by task "
        f"{memory.task_name or memory.task_uid} at {written})"
    )


def memory_tool_factories(memory: MemoryAccess) -> dict[BuiltinToolName, BuiltinToolFactory]:
    """Factories of `remember` and `recall` bound to `memory`, for `build_registry`."""

    def remember(spec: BuiltinTool) -> Tool:
        return Remember(memory, spec.timeout_seconds)

    def recall(spec: BuiltinTool) -> Tool:
        return Recall(memory, spec.timeout_seconds)

    return {BuiltinToolName.REMEMBER: remember, BuiltinToolName.RECALL: recall}
