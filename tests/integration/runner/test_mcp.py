"""MCP servers as tools, over stdio and streamable HTTP, with the local test server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opspawn.api.agenttask import McpServer, ToolsSpec
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess
from opspawn.runner.mcp_client import (
    McpConnectError,
    McpToolset,
    ToolDriftError,
    tool_fingerprint,
)
from opspawn.runner.tools import (
    ToolAuditRecord,
    ToolDecision,
    ToolRegistry,
    ToolResult,
    build_registry,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")
ALLOWED = ["echo", "add", "sleep", "fail", "redefine_echo"]


class RecordingAudit:
    def __init__(self) -> None:
        self.records: list[ToolAuditRecord] = []

    async def __call__(self, record: ToolAuditRecord) -> None:
        self.records.append(record)


@pytest.fixture(params=["stdio", "http"])
def server_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The `mcpServers` entry of the test server, reached over stdio or streamable HTTP."""
    base: dict[str, Any] = {"name": "testsrv", "allowedTools": ALLOWED, "timeoutSeconds": 1}
    if request.param == "stdio":
        yield {**base, "command": [sys.executable, str(SERVER_SCRIPT), "stdio"]}
        return
    port = free_port()
    process = ManagedProcess(
        name="mcp-test-server",
        argv=[sys.executable, str(SERVER_SCRIPT), "http", str(port)],
        log_path=tmp_path / "mcp-server.log",
    )
    process.start()
    try:
        process.wait_ready(lambda: is_listening(port), timeout=30)
        yield {**base, "url": f"http://127.0.0.1:{port}/mcp"}
    finally:
        process.stop()


def tools_spec(server: dict[str, Any]) -> ToolsSpec:
    return ToolsSpec.model_validate({"mcpServers": [server]})


def registry(toolset: McpToolset, audit: RecordingAudit, server: dict[str, Any]) -> ToolRegistry:
    return build_registry(tools_spec(server), audit, extra_tools=toolset.tools())


async def test_allowed_tools_are_offered_and_called(server_spec: dict[str, Any]) -> None:
    audit = RecordingAudit()
    async with McpToolset(tools_spec(server_spec).mcp_servers) as toolset:
        tools = registry(toolset, audit, server_spec)
        names = [definition.name for definition in tools.definitions()]
        assert names == sorted(f"testsrv__{name}" for name in ALLOWED)
        add = next(d for d in tools.definitions() if d.name == "testsrv__add")
        assert add.description == "Add two integers."
        assert add.input_schema["required"] == ["a", "b"]
        assert await tools.call("testsrv__add", {"a": 2, "b": 3}, "c1") == ToolResult("5")
        echoed = await tools.call("testsrv__echo", {"text": "héllo"}, "c2")
        assert echoed == ToolResult("héllo")


async def test_tool_not_on_the_allow_list_is_refused(server_spec: dict[str, Any]) -> None:
    audit = RecordingAudit()
    async with McpToolset(tools_spec(server_spec).mcp_servers) as toolset:
        tools = registry(toolset, audit, server_spec)
        result = await tools.call("testsrv__wipe", {}, "c3")
    assert result.is_error
    assert "'testsrv__wipe' is not allowed" in result.content
    decision = audit.records[0]
    assert isinstance(decision, ToolDecision)
    assert not decision.allowed


async def test_drifted_definition_is_refused(server_spec: dict[str, Any]) -> None:
    audit = RecordingAudit()
    async with McpToolset(tools_spec(server_spec).mcp_servers) as toolset:
        tools = registry(toolset, audit, server_spec)
        assert await tools.call("testsrv__echo", {"text": "a"}, "c4") == ToolResult("a")
        assert (await tools.call("testsrv__redefine_echo", {}, "c5")).content == "redefined"
        refused = await tools.call("testsrv__echo", {"text": "b"}, "c6")
        assert refused.is_error
        assert "definition of MCP tool 'testsrv__echo' changed" in refused.content
        again = await tools.call("testsrv__echo", {"text": "c"}, "c7")
        assert "stays refused" in again.content
        with pytest.raises(ToolDriftError, match="testsrv__echo"):
            await toolset.connections[0].verify_pins()
        assert await tools.call("testsrv__add", {"a": 1, "b": 1}, "c8") == ToolResult("2")


async def test_invalid_arguments_never_reach_the_server(server_spec: dict[str, Any]) -> None:
    audit = RecordingAudit()
    async with McpToolset(tools_spec(server_spec).mcp_servers) as toolset:
        tools = registry(toolset, audit, server_spec)
        result = await tools.call("testsrv__add", {"a": "two", "b": 3}, "c9")
    assert result.is_error
    assert "invalid arguments for 'testsrv__add' at 'a'" in result.content


async def test_errors_and_timeouts_are_error_results(server_spec: dict[str, Any]) -> None:
    audit = RecordingAudit()
    async with McpToolset(tools_spec(server_spec).mcp_servers) as toolset:
        tools = registry(toolset, audit, server_spec)
        failed = await tools.call("testsrv__fail", {}, "c10")
        assert failed.is_error
        assert "failing on purpose" in failed.content
        slow = await tools.call("testsrv__sleep", {"seconds": 30}, "c11")
        assert slow.is_error
        assert "timed out" in slow.content
        assert await tools.call("testsrv__add", {"a": 1, "b": 2}, "c12") == ToolResult("3")


async def test_unreachable_servers_fail_clearly() -> None:
    missing = McpServer.model_validate(
        {"name": "gone", "command": ["/nonexistent/mcp-server"], "allowedTools": ["x"]}
    )
    with pytest.raises(McpConnectError, match="'gone'"):
        async with McpToolset([missing]):
            pass
    closed = McpServer.model_validate(
        {"name": "closed", "url": f"http://127.0.0.1:{free_port()}/mcp", "allowedTools": ["x"]}
    )
    with pytest.raises(McpConnectError, match="'closed'"):
        async with McpToolset([closed]):
            pass


def test_fingerprint_covers_name_description_and_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    base = tool_fingerprint("add", "Add.", schema)
    assert base == tool_fingerprint("add", "Add.", dict(reversed(list(schema.items()))))
    assert base != tool_fingerprint("add2", "Add.", schema)
    assert base != tool_fingerprint("add", "Add!", schema)
    assert base != tool_fingerprint("add", "Add.", {"type": "object"})
