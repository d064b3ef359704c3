"""The registry: default-deny, argument validation, time limits, errors as results, audit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from opspawn.api.agenttask import ToolsSpec
from opspawn.api.events import ToolCallPayload, ToolResultPayload
from opspawn.runner.tools import (
    ToolAuditRecord,
    ToolConfigError,
    ToolDecision,
    ToolDefinition,
    ToolError,
    ToolOutcome,
    ToolRegistry,
    ToolResult,
    audit_payload,
    build_registry,
)
from opspawn.runner.tools.calculator import Calculator

pytestmark = pytest.mark.anyio


class RecordingAudit:
    """An audit hook that keeps every record."""

    def __init__(self) -> None:
        self.records: list[ToolAuditRecord] = []

    async def __call__(self, record: ToolAuditRecord) -> None:
        self.records.append(record)


@pytest.fixture
def audit() -> RecordingAudit:
    return RecordingAudit()


class FakeTool:
    """A tool whose behaviour the test chooses."""

    def __init__(self, name: str, behaviour: str = "ok", timeout_seconds: float = 5) -> None:
        self.definition = ToolDefinition(
            name=name,
            description="test tool",
            input_schema={
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0}},
                "required": ["n"],
                "additionalProperties": False,
            },
        )
        self.timeout_seconds = timeout_seconds
        self.behaviour = behaviour
        self.calls: list[Mapping[str, Any]] = []
        self.running = 0
        self.most_running = 0

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        self.calls.append(arguments)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.behaviour == "slow":
                await asyncio.Event().wait()
            if self.behaviour == "tool-error":
                raise ToolError("the thing is broken")
            if self.behaviour == "bug":
                raise KeyError("oops")
            if self.behaviour == "yield":
                await asyncio.sleep(0)
            return ToolResult(f"n={arguments['n']}")
        finally:
            self.running -= 1


async def test_allowed_call_runs_and_is_audited(audit: RecordingAudit) -> None:
    tool = FakeTool("fake")
    registry = ToolRegistry([tool], audit)
    assert await registry.call("fake", {"n": 3}, "c1") == ToolResult("n=3")
    decision, outcome = audit.records
    assert decision == ToolDecision("c1", "fake", {"n": 3}, allowed=True)
    assert isinstance(outcome, ToolOutcome)
    assert outcome.result == ToolResult("n=3")
    assert outcome.call_id == "c1"


async def test_unknown_tool_is_refused_and_audited(audit: RecordingAudit) -> None:
    registry = ToolRegistry([FakeTool("fake")], audit)
    result = await registry.call("shell", {"cmd": "rm -rf /"}, "c2")
    assert result.is_error
    assert "'shell' is not allowed" in result.content
    decision, outcome = audit.records
    assert isinstance(decision, ToolDecision)
    assert not decision.allowed
    assert "not allowed" in decision.reason
    assert isinstance(outcome, ToolOutcome)
    assert outcome.result == result


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "'n' is a required property"),
        ({"n": "three"}, "at 'n': 'three' is not of type 'integer'"),
        ({"n": -1}, "at 'n': -1 is less than the minimum of 0"),
        ({"n": 1, "extra": True}, "Additional properties are not allowed"),
        ([1, 2], "is not of type 'object'"),
        ("{not json", "not valid JSON"),
    ],
)
async def test_invalid_arguments_come_back_as_tool_errors(
    audit: RecordingAudit, arguments: Any, message: str
) -> None:
    tool = FakeTool("fake")
    registry = ToolRegistry([tool], audit)
    result = await registry.call("fake", arguments, "c3")
    assert result.is_error
    assert message in result.content
    assert tool.calls == []
    decision = audit.records[0]
    assert isinstance(decision, ToolDecision)
    assert not decision.allowed
    assert message in decision.reason


async def test_arguments_as_json_text(audit: RecordingAudit) -> None:
    registry = ToolRegistry([FakeTool("fake")], audit)
    assert await registry.call("fake", '{"n": 7}', "c4") == ToolResult("n=7")


async def test_timeout_is_an_error_result(audit: RecordingAudit) -> None:
    registry = ToolRegistry([FakeTool("fake", "slow", timeout_seconds=0.05)], audit)
    result = await registry.call("fake", {"n": 1}, "c5")
    assert result == ToolResult("tool 'fake' timed out after 0.05s", is_error=True)
    assert isinstance(audit.records[-1], ToolOutcome)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("tool-error", "failed: the thing is broken"), ("bug", "failed unexpectedly: KeyError")],
)
async def test_tool_failures_are_error_results(
    audit: RecordingAudit, behaviour: str, message: str
) -> None:
    registry = ToolRegistry([FakeTool("fake", behaviour)], audit)
    result = await registry.call("fake", {"n": 1}, "c6")
    assert result.is_error
    assert message in result.content


async def test_parallel_calls_are_limited(audit: RecordingAudit) -> None:
    tool = FakeTool("fake", "yield")
    registry = ToolRegistry([tool], audit, max_parallel_calls=2)
    results = await asyncio.gather(*(registry.call("fake", {"n": i}, f"c{i}") for i in range(6)))
    assert [r.content for r in results] == [f"n={i}" for i in range(6)]
    assert tool.most_running == 2


async def test_definitions_are_what_the_model_sees(audit: RecordingAudit) -> None:
    registry = ToolRegistry([FakeTool("b"), FakeTool("a")], audit)
    assert [d.name for d in registry.definitions()] == ["a", "b"]
    assert "a" in registry
    assert "c" not in registry


def test_duplicate_and_invalid_tools_are_refused(audit: RecordingAudit) -> None:
    with pytest.raises(ToolConfigError, match="defined twice"):
        ToolRegistry([FakeTool("a"), FakeTool("a")], audit)
    broken = FakeTool("broken")
    broken.definition = ToolDefinition("broken", "", {"type": "nonsense"})
    with pytest.raises(ToolConfigError, match="invalid input schema"):
        ToolRegistry([broken], audit)
    scalar = FakeTool("scalar")
    scalar.definition = ToolDefinition("scalar", "", {"type": "string"})
    with pytest.raises(ToolConfigError, match="must be of type object"):
        ToolRegistry([scalar], audit)


async def test_registry_from_spec_is_default_deny(audit: RecordingAudit) -> None:
    spec = ToolsSpec.model_validate({"builtin": [{"name": "calculator"}]})
    registry = build_registry(spec, audit, extra_tools=[FakeTool("srv__echo")])
    assert [d.name for d in registry.definitions()] == ["calculator", "srv__echo"]
    assert (await registry.call("calculator", {"expression": "6*7"}, "c7")).content == "42"
    refused = await registry.call("current_time", {}, "c8")
    assert refused.is_error
    assert "not allowed" in refused.content
    empty = build_registry(ToolsSpec(), audit)
    assert empty.definitions() == []


def test_builtin_without_a_factory_is_a_config_error(audit: RecordingAudit) -> None:
    spec = ToolsSpec.model_validate({"builtin": [{"name": "remember"}]})
    with pytest.raises(ToolConfigError, match="'remember' is not available"):
        build_registry(spec, audit)


async def test_calculator_abuse_through_the_registry(audit: RecordingAudit) -> None:
    registry = ToolRegistry([Calculator()], audit)
    for expression in ("__import__('os')", "9 ** 9 ** 9", "open"):
        result = await registry.call("calculator", {"expression": expression}, "c9")
        assert result.is_error
        assert "calculator" in result.content


def test_audit_records_become_event_payloads() -> None:
    decision = ToolDecision("c1", "x" * 300, {"a": 1}, allowed=False, reason="no")
    call = audit_payload(decision, step=2)
    assert isinstance(call, ToolCallPayload)
    assert call.tool == "x" * 256
    assert (call.step, call.allowed, call.reason, call.arguments) == (2, False, "no", {"a": 1})
    outcome = ToolOutcome("c1", "calculator", ToolResult("boom", is_error=True), 12)
    result = audit_payload(outcome)
    assert result == ToolResultPayload(
        call_id="c1", tool="calculator", is_error=True, content="boom", duration_ms=12
    )
