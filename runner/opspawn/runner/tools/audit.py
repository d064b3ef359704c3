"""Audit records of tool use: every decision and every result, handed to a hook.

The registry does not publish anything itself: the agent loop passes a `ToolAuditHook` and
turns each record into a runner event (`audit_payload` builds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from opspawn.api.events import ToolCallPayload, ToolResultPayload
from opspawn.runner.tools.base import ToolResult


@dataclass(frozen=True)
class ToolDecision:
    """Whether a call the model asked for runs: allowed and with valid arguments, or not."""

    call_id: str
    tool: str
    arguments: Any
    allowed: bool
    reason: str = ""
    """Why the call was refused (empty when it runs)."""


@dataclass(frozen=True)
class ToolOutcome:
    """The result of a call (for a refused call: the error the model is given)."""

    call_id: str
    tool: str
    result: ToolResult
    duration_ms: int


ToolAuditRecord = ToolDecision | ToolOutcome


class ToolAuditHook(Protocol):
    """Receives every audit record, in order: a decision, then the call's outcome."""

    async def __call__(self, record: ToolAuditRecord, /) -> None: ...


_NAME_MAX = 256
"""Tool names and call ids come from the model; events keep at most this much of them."""


def audit_payload(
    record: ToolAuditRecord, step: int | None = None
) -> ToolCallPayload | ToolResultPayload:
    """The runner-event payload of an audit record (tool_call or tool_result)."""
    if isinstance(record, ToolDecision):
        return ToolCallPayload(
            step=step,
            call_id=record.call_id[:_NAME_MAX],
            tool=record.tool[:_NAME_MAX],
            arguments=record.arguments,
            allowed=record.allowed,
            reason=record.reason,
        )
    return ToolResultPayload(
        step=step,
        call_id=record.call_id[:_NAME_MAX],
        tool=record.tool[:_NAME_MAX],
        is_error=record.result.is_error,
        content=record.result.content,
        duration_ms=record.duration_ms,
    )
