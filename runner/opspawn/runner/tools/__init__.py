"""Tools the model can call: built-ins, MCP tools, the default-deny registry and its audit."""

from opspawn.runner.tools.audit import (
    ToolAuditHook,
    ToolAuditRecord,
    ToolDecision,
    ToolOutcome,
    audit_payload,
)
from opspawn.runner.tools.base import Tool, ToolDefinition, ToolError, ToolResult
from opspawn.runner.tools.builtin import BUILTIN_FACTORIES, BuiltinToolFactory, build_registry
from opspawn.runner.tools.registry import ToolConfigError, ToolRegistry

__all__ = [
    "BUILTIN_FACTORIES",
    "BuiltinToolFactory",
    "Tool",
    "ToolAuditHook",
    "ToolAuditRecord",
    "ToolConfigError",
    "ToolDecision",
    "ToolDefinition",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "ToolResult",
    "audit_payload",
    "build_registry",
]
