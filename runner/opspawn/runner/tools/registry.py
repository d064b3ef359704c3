"""The tools of one task: default-deny, validated, time-limited and audited.

Only tools registered here can run; the registry is built from the AgentTask's `spec.tools`
(see `build_registry`). Every call the model asks for goes through `ToolRegistry.call`, which
never raises for a tool's failure: a refused call, invalid arguments, an error inside the tool
or a timeout all come back as an error `ToolResult` the model sees. Each call produces two audit
records, the decision and the outcome, awaited in that order; an exception raised by the audit
hook itself (say, the event publisher has failed) is the loop's and propagates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from opspawn.runner.tools.audit import ToolAuditHook, ToolDecision, ToolOutcome
from opspawn.runner.tools.base import Tool, ToolDefinition, ToolError, ToolResult

logger = logging.getLogger(__name__)


class ToolConfigError(ValueError):
    """The task's tool configuration cannot be honoured (the runner's input is invalid)."""


class ToolRegistry:
    """The tools a task may call, by name; everything else is refused."""

    def __init__(
        self, tools: Iterable[Tool], audit: ToolAuditHook, *, max_parallel_calls: int = 4
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in tools:
            self._register(tool)
        self._audit = audit
        self._slots = asyncio.Semaphore(max_parallel_calls)

    def _register(self, tool: Tool) -> None:
        name = tool.definition.name
        if name in self._tools:
            raise ToolConfigError(f"tool {name!r} is defined twice")
        schema = dict(tool.definition.input_schema)
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise ToolConfigError(
                f"tool {name!r} has an invalid input schema: {error.message}"
            ) from None
        if schema.get("type") != "object":
            raise ToolConfigError(f"the input schema of tool {name!r} must be of type object")
        self._tools[name] = tool
        self._validators[name] = Draft202012Validator(schema)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def definitions(self) -> list[ToolDefinition]:
        """The tools offered to the model, sorted by name."""
        return [self._tools[name].definition for name in sorted(self._tools)]

    async def call(self, name: str, arguments: Any, call_id: str) -> ToolResult:
        """Run one call the model asked for. `arguments` is a JSON object, or its JSON text.

        Never raises for the tool's sake: refusals and failures are error results.
        """
        started = time.monotonic()
        tool = self._tools.get(name)
        parsed, problem = self._check(name, arguments)
        await self._audit(
            ToolDecision(call_id, name, parsed, allowed=problem is None, reason=problem or "")
        )
        if tool is None or problem is not None:
            result = ToolResult(f"call refused: {problem}", is_error=True)
        else:
            async with self._slots:
                result = await self._run(tool, parsed)
        duration_ms = int((time.monotonic() - started) * 1000)
        await self._audit(ToolOutcome(call_id, name, result, duration_ms))
        return result

    def _check(self, name: str, arguments: Any) -> tuple[Any, str | None]:
        """The parsed arguments, and why the call must not run (None when it may)."""
        if name not in self._tools:
            return arguments, f"tool {name!r} is not allowed for this task"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as error:
                return arguments, f"arguments of {name!r} are not valid JSON: {error}"
        if arguments is None:
            arguments = {}
        invalid = best_match(self._validators[name].iter_errors(arguments))
        if invalid is not None:
            where = "/".join(str(part) for part in invalid.absolute_path)
            at = f" at {where!r}" if where else ""
            return arguments, f"invalid arguments for {name!r}{at}: {invalid.message}"
        return arguments, None

    async def _run(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolResult:
        name = tool.definition.name
        try:
            async with asyncio.timeout(tool.timeout_seconds):
                return await tool.call(arguments)
        except TimeoutError:
            return ToolResult(
                f"tool {name!r} timed out after {tool.timeout_seconds:g}s", is_error=True
            )
        except ToolError as error:
            return ToolResult(f"tool {name!r} failed: {error}", is_error=True)
        except Exception as error:  # a tool's bug must not end the agent loop
            logger.exception("tool %r raised", name)
            return ToolResult(
                f"tool {name!r} failed unexpectedly: {type(error).__name__}: {error}",
                is_error=True,
            )
