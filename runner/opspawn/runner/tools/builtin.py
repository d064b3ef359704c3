"""Build a task's tool registry from its `spec.tools`.

Built-in tools are made by factories keyed by name. A tool the spec lists but no factory
makes is a configuration error (the runner exits INVALID_INPUT): `remember` and `recall` get
their factories from the memory module, which passes them as `factories`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opspawn.api.agenttask import BuiltinTool, BuiltinToolName, ToolsSpec
from opspawn.runner.tools.audit import ToolAuditHook
from opspawn.runner.tools.base import Tool
from opspawn.runner.tools.calculator import Calculator
from opspawn.runner.tools.current_time import CurrentTime
from opspawn.runner.tools.http_fetch import DEFAULT_MAX_RESPONSE_BYTES, HttpFetch
from opspawn.runner.tools.registry import ToolConfigError, ToolRegistry

BuiltinToolFactory = Callable[[BuiltinTool], Tool]
"""Makes a built-in tool from its entry in `spec.tools.builtin`."""


def _http_fetch(spec: BuiltinTool) -> Tool:
    return HttpFetch(
        spec.allowed_hosts or [],
        max_response_bytes=spec.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES,
        timeout_seconds=spec.timeout_seconds,
    )


def _calculator(spec: BuiltinTool) -> Tool:
    return Calculator(timeout_seconds=spec.timeout_seconds)


def _current_time(spec: BuiltinTool) -> Tool:
    return CurrentTime(timeout_seconds=spec.timeout_seconds)


BUILTIN_FACTORIES: Mapping[BuiltinToolName, BuiltinToolFactory] = {
    BuiltinToolName.HTTP_FETCH: _http_fetch,
    BuiltinToolName.CALCULATOR: _calculator,
    BuiltinToolName.CURRENT_TIME: _current_time,
}


def build_registry(
    spec: ToolsSpec,
    audit: ToolAuditHook,
    *,
    extra_tools: Iterable[Tool] = (),
    factories: Mapping[BuiltinToolName, BuiltinToolFactory] = BUILTIN_FACTORIES,
) -> ToolRegistry:
    """The registry of the built-in tools `spec` allows, plus `extra_tools` (MCP tools).

    Raises ToolConfigError for a built-in tool without a factory or a clash of names.
    """
    tools: list[Tool] = []
    for entry in spec.builtin:
        factory = factories.get(entry.name)
        if factory is None:
            raise ToolConfigError(f"built-in tool {entry.name.value!r} is not available here")
        tools.append(factory(entry))
    tools.extend(extra_tools)
    return ToolRegistry(tools, audit, max_parallel_calls=spec.max_parallel_calls)
