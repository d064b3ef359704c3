"""Stall detection: the model making the same tool call over and over."""

from __future__ import annotations

import json
from collections.abc import Iterable

from opspawn.runner.model.types import ToolCall


def call_signature(call: ToolCall) -> tuple[str, str]:
    """What makes two calls "the same": the tool name and the arguments (key order ignored)."""
    if call.malformed_arguments is not None:
        return call.name, call.malformed_arguments
    return call.name, json.dumps(call.arguments, sort_keys=True, separators=(",", ":"))


class StallDetector:
    """Watches the tool calls of a run, in order, across turns.

    The run is stalled when one call (same name, same arguments) comes `limit` times in a row;
    any other call in between starts the count again.
    """

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError("a stall needs at least two identical calls")
        self.limit = limit
        self._last: tuple[str, str] | None = None
        self._streak = 0

    def observe(self, calls: Iterable[ToolCall]) -> ToolCall | None:
        """Record the calls of one turn; the call that completes a stall, if one does."""
        for call in calls:
            signature = call_signature(call)
            self._streak = self._streak + 1 if signature == self._last else 1
            self._last = signature
            if self._streak >= self.limit:
                return call
        return None
