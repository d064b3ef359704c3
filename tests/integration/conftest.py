"""Fixtures shared by the integration tests: a NATS server of the test's own (with auth, as
everywhere: runners need the credentials the operator would mint) with the event stream as the
operator creates it, and fake model servers started from scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient

from opspawn.dev.nats import NatsServer
from opspawn.fakes import FakeModelServer, Script
from opspawn.operator.stream import StreamSettings, stream_config

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server with JetStream and auth of its own, on free ports, stopped at teardown."""
    server = NatsServer(tmp_path / "nats", auth=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def event_stream(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """The event stream as the operator creates it; yields an admin client of its server."""
    nc = await nats.connect(**nats_server.connect_options())
    await nc.jetstream().add_stream(stream_config(StreamSettings()))
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start fake model servers from script dicts; all are stopped at the end."""
    servers: list[FakeModelServer] = []

    async def start(script: dict[str, Any]) -> FakeModelServer:
        server = FakeModelServer(Script.model_validate(script))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
