"""http_fetch against a local aiohttp server on 127.0.0.1, through the tool registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from opspawn.api.agenttask import ToolsSpec
from opspawn.runner.tools import ToolAuditRecord, ToolRegistry, build_registry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

BIG = 2 * 1024 * 1024


class Site:
    """A small web server: its port and a way to release requests it holds."""

    def __init__(self, port: int, release: asyncio.Event) -> None:
        self.port = port
        self.release = release

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    release = asyncio.Event()
    holder: dict[str, int] = {}

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="hello from the allowed host")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"a" * BIG, content_type="text/plain")

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    async def redirect_in(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def redirect_out(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{holder['port']}/ok")

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok", ok),
            web.get("/big", big),
            web.get("/slow", slow),
            web.get("/missing", missing),
            web.get("/redirect-in", redirect_in),
            web.get("/redirect-out", redirect_out),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    holder["port"] = port
    try:
        yield Site(port, release)
    finally:
        release.set()
        await runner.cleanup()


async def _ignore(_: ToolAuditRecord) -> None:
    return None


def registry(site: Site, **limits: int) -> ToolRegistry:
    entry = {"name": "http_fetch", "allowedHosts": [f"127.0.0.1:{site.port}"], **limits}
    return build_registry(ToolsSpec.model_validate({"builtin": [entry]}), _ignore)


async def test_allowed_host(site: Site) -> None:
    result = await registry(site).call("http_fetch", {"url": site.url("/ok")}, "c1")
    assert not result.is_error
    assert result.content.startswith("HTTP 200 OK\n")
    assert result.content.endswith("\n\nhello from the allowed host")


async def test_denied_host_is_never_contacted(site: Site) -> None:
    tools = registry(site)
    for url in (f"http://localhost:{site.port}/ok", f"http://127.0.0.1:{site.port + 1}/ok"):
        result = await tools.call("http_fetch", {"url": url}, "c2")
        assert result.is_error
        assert "not in this task's allow-list" in result.content


async def test_redirects_stay_on_the_list(site: Site) -> None:
    tools = registry(site)
    followed = await tools.call("http_fetch", {"url": site.url("/redirect-in")}, "c3")
    assert not followed.is_error
    assert followed.content.endswith("hello from the allowed host")
    refused = await tools.call("http_fetch", {"url": site.url("/redirect-out")}, "c4")
    assert refused.is_error
    assert "redirect from" in refused.content
    assert f"localhost:{site.port} is not in this task's allow-list" in refused.content


async def test_size_cap(site: Site) -> None:
    result = await registry(site, maxResponseBytes=1000).call(
        "http_fetch", {"url": site.url("/big")}, "c5"
    )
    assert not result.is_error
    assert "Body: 1000 bytes (cut at 1000 bytes)" in result.content
    assert result.content.endswith("\n\n" + "a" * 1000)


async def test_default_size_cap_is_one_mebibyte(site: Site) -> None:
    result = await registry(site).call("http_fetch", {"url": site.url("/big")}, "c6")
    assert f"Body: {1024 * 1024} bytes (cut at {1024 * 1024} bytes)" in result.content


async def test_time_cap(site: Site) -> None:
    result = await registry(site, timeoutSeconds=1).call(
        "http_fetch", {"url": site.url("/slow")}, "c7"
    )
    assert result.is_error
    assert "1s" in result.content


async def test_http_errors_are_error_results(site: Site) -> None:
    result = await registry(site).call("http_fetch", {"url": site.url("/missing")}, "c8")
    assert result.is_error
    assert result.content.startswith("HTTP 404 Not Found\n")


async def test_invalid_arguments(site: Site) -> None:
    result = await registry(site).call("http_fetch", {"href": site.url("/ok")}, "c9")
    assert result.is_error
    assert "'url' is a required property" in result.content
