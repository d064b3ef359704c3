"""MCP servers of a task (`spec.tools.mcpServers`) as tools, with pinned definitions.

A server is reached over stdio (`command`: the runner starts it as a child process, with only
the SDK's short list of safe environment variables, so no key of the runner's reaches it; nor
can it read them from /proc, see `opspawn.runner.key_custody`) or over streamable HTTP
(`url`). At start the server's tools are listed once; the ones on the
server's `allowedTools` are pinned (a SHA-256 fingerprint of name, description and input
schema) and offered to the model as `<server>__<tool>`. The others are never offered, so a call
to them is refused by the registry like any unknown tool.

Before every call the tool list is fetched again and the called tool's definition compared with
its pin. A changed or vanished definition (a "rug pull": what the model was told is no longer
what runs) is refused with a clear error, and that tool stays refused for the rest of the task.
This costs one `tools/list` round trip per call, which is small next to a model turn.

Usage (inside one asyncio task, since the SDK's transports are structured-concurrency scopes):

    async with McpToolset(spec.tools.mcp_servers) as mcp:
        registry = build_registry(spec.tools, audit, extra_tools=mcp.tools())
        ...
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx2
import mcp.types as mcp_types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from opspawn.api.agenttask import McpServer
from opspawn.runner.tools.base import ToolDefinition, ToolError, ToolResult

logger = logging.getLogger(__name__)

TOOL_NAME_SEPARATOR = "__"
"""MCP tools are offered to the model as <server><separator><tool>."""

MAX_RESULT_BYTES = 1024 * 1024
"""An MCP tool result longer than this (UTF-8) is cut before the model sees it."""

MAX_LIST_PAGES = 100
"""A server whose tool list has more pages than this is refused (it would never end)."""


class McpConnectError(RuntimeError):
    """An MCP server could not be started, reached or listed."""


class ToolDriftError(RuntimeError):
    """A pinned MCP tool's definition changed, or the tool disappeared, after it was pinned."""


def tool_fingerprint(name: str, description: str, input_schema: Mapping[str, Any]) -> str:
    """SHA-256 of a tool's name, description and input schema (canonical JSON)."""
    canonical = json.dumps(
        {"name": name, "description": description, "inputSchema": input_schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class PinnedTool:
    """An MCP tool as it was listed at start."""

    server: str
    name: str
    description: str
    input_schema: Mapping[str, Any]
    fingerprint: str

    @classmethod
    def of(cls, server: str, tool: mcp_types.Tool) -> PinnedTool:
        description = tool.description or ""
        return cls(
            server=server,
            name=tool.name,
            description=description,
            input_schema=tool.input_schema,
            fingerprint=tool_fingerprint(tool.name, description, tool.input_schema),
        )

    @property
    def exposed_name(self) -> str:
        return f"{self.server}{TOOL_NAME_SEPARATOR}{self.name}"


class McpServerConnection:
    """One MCP server of the task: a session, its pinned allowed tools, and calls to them."""

    def __init__(self, spec: McpServer) -> None:
        self.spec = spec
        self._client: Client | None = None
        self._pins: dict[str, PinnedTool] = {}
        self._drifted: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    async def __aenter__(self) -> Self:
        client = Client(
            self._target(),
            read_timeout_seconds=float(self.spec.timeout_seconds),
            cache=None,
        )
        try:
            await client.__aenter__()
        except Exception as error:  # the SDK raises transport errors, often in groups
            raise McpConnectError(
                f"cannot connect to MCP server {self.name!r}: {_describe(error)}"
            ) from None
        self._client = client
        try:
            listed = await self._list_tools()
        except McpConnectError:
            await self.__aexit__(None, None, None)
            raise
        self._pin(listed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.__aexit__(exc_type, exc, traceback)
        except Exception as error:  # a server that died must not fail the end of the task
            logger.warning("closing MCP server %r: %s", self.name, _describe(error))

    def _target(self) -> StdioServerParameters | str:
        if self.spec.command:
            command, *args = self.spec.command
            return StdioServerParameters(command=command, args=args)
        if self.spec.url:
            return self.spec.url
        raise McpConnectError(f"MCP server {self.name!r} has neither url nor command")

    def _pin(self, listed: Mapping[str, mcp_types.Tool]) -> None:
        for name in self.spec.allowed_tools:
            tool = listed.get(name)
            if tool is None:
                logger.warning("MCP server %r does not offer allowed tool %r", self.name, name)
                continue
            self._pins[name] = PinnedTool.of(self.name, tool)
        refused = sorted(set(listed) - set(self.spec.allowed_tools))
        if refused:
            logger.info("MCP server %r: tools not allowed for this task: %s", self.name, refused)

    def tools(self) -> list[McpTool]:
        """The allowed tools of this server, as offered to the model."""
        return [McpTool(self, pin) for pin in self._pins.values()]

    async def verify_pins(self) -> None:
        """List the tools again; ToolDriftError naming every pinned tool that changed."""
        listed = await self._list_tools()
        problems = [problem for pin in self._pins.values() if (problem := _drift(pin, listed))]
        if problems:
            raise ToolDriftError("; ".join(problems))

    async def call(self, pin: PinnedTool, arguments: Mapping[str, Any]) -> ToolResult:
        """Call a pinned tool after checking its definition has not drifted.

        Raises ToolDriftError on drift and ToolError when the server fails; an error result
        of the tool itself is returned as an error ToolResult.
        """
        await self._check_drift(pin)
        try:
            result = await self._session_client().session.call_tool(
                pin.name, dict(arguments), read_timeout_seconds=float(self.spec.timeout_seconds)
            )
        except (MCPError, RuntimeError, httpx2.HTTPError) as error:
            raise ToolError(f"MCP server {self.name!r}: {error}") from None
        if not isinstance(result, mcp_types.CallToolResult):
            raise ToolError(f"MCP server {self.name!r} answered with an unsupported result")
        return ToolResult(_result_text(result), is_error=bool(result.is_error))

    async def _check_drift(self, pin: PinnedTool) -> None:
        if pin.name not in self._drifted:
            try:
                listed = await self._list_tools()
            except McpConnectError as error:
                raise ToolError(str(error)) from None
            problem = _drift(pin, listed)
            if problem is None:
                return
            logger.error("MCP tool drift: %s", problem)
            self._drifted[pin.name] = problem
        raise ToolDriftError(
            f"refused: {self._drifted[pin.name]}; it stays refused for the rest of this task"
        )

    async def _list_tools(self) -> dict[str, mcp_types.Tool]:
        """Every tool the server offers now, by name (all pages, bypassing any cache)."""
        client = self._session_client()
        tools: dict[str, mcp_types.Tool] = {}
        cursor: str | None = None
        try:
            for _ in range(MAX_LIST_PAGES):
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools.update((tool.name, tool) for tool in page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    return tools
        except (MCPError, httpx2.HTTPError, TimeoutError) as error:
            raise McpConnectError(
                f"cannot list the tools of MCP server {self.name!r}: {error}"
            ) from None
        raise McpConnectError(f"MCP server {self.name!r} lists more than {MAX_LIST_PAGES} pages")

    def _session_client(self) -> Client:
        if self._client is None:
            raise McpConnectError(f"MCP server {self.name!r} is not connected")
        return self._client


def _describe(error: BaseException) -> str:
    """`Type: message` of an error, or of the errors inside an exception group."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def _drift(pin: PinnedTool, listed: Mapping[str, mcp_types.Tool]) -> str | None:
    """Why `pin` no longer matches the server's listing, or None if it still does."""
    tool = listed.get(pin.name)
    if tool is None:
        return f"MCP server {pin.server!r} no longer offers tool {pin.name!r}"
    now = PinnedTool.of(pin.server, tool).fingerprint
    if now != pin.fingerprint:
        return (
            f"the definition of MCP tool {pin.exposed_name!r} changed since the task started "
            f"(pinned {pin.fingerprint[:12]}, now {now[:12]})"
        )
    return None


def _result_text(result: mcp_types.CallToolResult) -> str:
    """The text the model sees for an MCP tool result, cut at MAX_RESULT_BYTES."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    data = text.encode()
    if len(data) <= MAX_RESULT_BYTES:
        return text
    return data[:MAX_RESULT_BYTES].decode(errors="ignore") + f"\n[cut at {MAX_RESULT_BYTES} bytes]"


def _block_text(block: mcp_types.ContentBlock) -> str:
    match block:
        case mcp_types.TextContent(text=text):
            return text
        case mcp_types.ImageContent(mime_type=mime) | mcp_types.AudioContent(mime_type=mime):
            return f"[{type(block).__name__}: {mime}, not shown]"
        case mcp_types.EmbeddedResource(resource=mcp_types.TextResourceContents(text=text)):
            return text
        case mcp_types.EmbeddedResource(resource=resource):
            return f"[resource {resource.uri}: binary, not shown]"
        case mcp_types.ResourceLink(uri=uri):
            return f"[resource link: {uri}]"
    return f"[{type(block).__name__}, not shown]"


class McpTool:
    """A pinned MCP tool offered to the model as <server>__<tool>."""

    def __init__(self, connection: McpServerConnection, pin: PinnedTool) -> None:
        self._connection = connection
        self.pin = pin
        self.definition = ToolDefinition(
            name=pin.exposed_name, description=pin.description, input_schema=pin.input_schema
        )
        self.timeout_seconds = float(connection.spec.timeout_seconds)

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        try:
            return await self._connection.call(self.pin, arguments)
        except ToolDriftError as error:
            raise ToolError(str(error)) from None


class McpToolset:
    """Every MCP server of a task, connected for the duration of an `async with`."""

    def __init__(self, servers: Sequence[McpServer]) -> None:
        self._servers = list(servers)
        self._connections: list[McpServerConnection] = []
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            for spec in self._servers:
                connection = await self._stack.enter_async_context(McpServerConnection(spec))
                self._connections.append(connection)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._connections.clear()
        await self._stack.__aexit__(exc_type, exc, traceback)

    @property
    def connections(self) -> list[McpServerConnection]:
        return list(self._connections)

    def tools(self) -> list[McpTool]:
        """The allowed, pinned tools of every server."""
        return [tool for connection in self._connections for tool in connection.tools()]
