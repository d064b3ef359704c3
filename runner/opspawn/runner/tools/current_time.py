"""`current_time`: the current time as ISO-8601, in UTC or an IANA time zone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opspawn.runner.tools.base import ToolDefinition, ToolError, ToolResult

DEFINITION = ToolDefinition(
    name="current_time",
    description=(
        "The current date and time as ISO-8601: in UTC, or in the IANA time zone given "
        "(e.g. Europe/Paris, America/New_York)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$",
                "description": "IANA time zone name; UTC when omitted.",
            }
        },
        "additionalProperties": False,
    },
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CurrentTime:
    """The current_time tool; `clock` returns an aware datetime (tests pass a fixed one)."""

    definition = DEFINITION

    def __init__(self, timeout_seconds: float = 5, clock: Callable[[], datetime] = utc_now) -> None:
        self.timeout_seconds = timeout_seconds
        self._clock = clock

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        now = self._clock().astimezone(UTC)
        name = arguments.get("timezone")
        if name is None:
            return ToolResult(now.isoformat(timespec="seconds").replace("+00:00", "Z"))
        try:
            zone = ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(
                f"unknown time zone {name!r}; use an IANA name such as Europe/Paris"
            ) from None
        return ToolResult(now.astimezone(zone).isoformat(timespec="seconds"))
