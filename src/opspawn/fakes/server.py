"""A real HTTP server that plays a scripted model in the three providers' wire formats.

    async with FakeModelServer(script) as server:
        client = AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test-not-a-real-key")
        ...
        assert server.requests[1].body["messages"][-1]["role"] == "tool"

One server answers all three APIs:

- OpenAI Chat Completions: `POST /v1/chat/completions` (base URL `<url>/v1`);
- Anthropic Messages: `POST /v1/messages` (base URL `<url>`);
- Gemini: `POST /v1/models/{model}:generateContent`, or `/v1beta/...` (base URL `<url>`).

and embeddings for long-term memory (`opspawn.fakes.embeddings`): OpenAI `POST /v1/embeddings`,
Gemini `POST /v1beta/models/{model}:batchEmbedContents`; they answer outside the script.

Every request is recorded (`requests`) with its arrival and response times on the monotonic
clock, so tests can check what clients sent and when, without timing anything themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from opspawn.fakes.embeddings import (
    EmbeddingRequestError,
    google_batch_embeddings,
    openai_embeddings,
)
from opspawn.fakes.replies import build_reply
from opspawn.fakes.script import Failure, Script, default_script
from opspawn.fakes.wire import Wire, WireError
from opspawn.fakes.wire_anthropic import AnthropicWire
from opspawn.fakes.wire_google import GoogleWire
from opspawn.fakes.wire_openai import OpenAIWire

GENERATE_CONTENT = "generateContent"
BATCH_EMBED_CONTENTS = "batchEmbedContents"
OPENAI = OpenAIWire()
ANTHROPIC = AnthropicWire()
GOOGLE = GoogleWire()
MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class RecordedRequest:
    """One request the server received, and how it answered."""

    provider: str
    """openai, anthropic or google: which API the request was for."""
    path: str
    headers: dict[str, str]
    body: Any
    """The JSON body (None when it was not JSON)."""
    received_at: float
    """`time.monotonic()` when the request arrived."""
    turn: int | None = None
    """Index of the script turn that answered, once known."""
    status: int | None = None
    responded_at: float | None = None
    """`time.monotonic()` when the answer was ready to send."""


class FakeModelServer:
    """The fake provider server; start with `async with` or `start()` / `stop()`."""

    def __init__(
        self, script: Script | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """`port` 0 binds a free port chosen by the system (see `port` once started)."""
        self.script = script or default_script()
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._requests: list[RecordedRequest] = []
        self._failures_served: defaultdict[int, int] = defaultdict(int)
        self._issued_signatures: set[str] = set()

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        app.router.add_post("/{version:v1|v1beta}/models/{model_and_method}", self._google)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving; slow replies still waiting are cut short."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake model server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def google_base_url(self) -> str:
        return self.url

    # ----------------------------------------------------------------------- records

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first."""
        return list(self._requests)

    # ----------------------------------------------------------------------- handlers

    async def _openai(self, request: web.Request) -> web.Response:
        return await self._answer(request, OPENAI, model=None)

    async def _anthropic(self, request: web.Request) -> web.Response:
        return await self._answer(request, ANTHROPIC, model=None)

    async def _google(self, request: web.Request) -> web.Response:
        model, _, method = request.match_info["model_and_method"].partition(":")
        if method == BATCH_EMBED_CONTENTS:
            return await self._embeddings(request, GOOGLE, google_batch_embeddings)
        if method != GENERATE_CONTENT:
            raise web.HTTPNotFound(
                text=f"the fake server only serves :{GENERATE_CONTENT} and :{BATCH_EMBED_CONTENTS}"
            )
        return await self._answer(request, GOOGLE, model=model)

    async def _openai_embeddings(self, request: web.Request) -> web.Response:
        return await self._embeddings(request, OPENAI, openai_embeddings)

    async def _record(self, request: web.Request, wire: Wire) -> RecordedRequest:
        """Every request is recorded as it arrives, whatever it is answered."""
        record = RecordedRequest(
            provider=wire.provider,
            path=request.path,
            headers=dict(request.headers),
            body=_json_or_none(await request.read()),
            received_at=time.monotonic(),
        )
        self._requests.append(record)
        return record

    async def _embeddings(
        self, request: web.Request, wire: Wire, answer: Callable[[Any], dict[str, Any]]
    ) -> web.Response:
        """Embeddings: recorded like every request, answered without using a script turn."""
        record = await self._record(request, wire)
        try:
            body = answer(record.body)
        except EmbeddingRequestError as error:
            return self._respond(record, wire.error_body(400, str(error)), status=400)
        return self._respond(record, body, status=200)

    async def _answer(self, request: web.Request, wire: Wire, *, model: str | None) -> web.Response:
        record = await self._record(request, wire)
        try:
            parsed = wire.parse(record.body, model=model, issued=self._issued_signatures)
        except WireError as error:
            return self._respond(record, wire.error_body(400, str(error)), status=400)
        index, turn = self.script.turn_for(parsed.assistant_turns, tools_offered=bool(parsed.tools))
        record.turn = index
        if self._failures_served[index] < len(turn.fail):
            failure = turn.fail[self._failures_served[index]]
            self._failures_served[index] += 1
            return self._fail(record, wire, failure)
        if turn.delay and await self._stopped_within(turn.delay):
            raise web.HTTPServiceUnavailable(text="the fake model server is stopping")
        reply = build_reply(turn, parsed, request_bytes=len(await request.read()))
        rendered = wire.render(reply, model=parsed.model, serial=len(self._requests))
        self._issued_signatures.update(rendered.signatures)
        return self._respond(record, rendered.body, status=200)

    def _fail(self, record: RecordedRequest, wire: Wire, failure: Failure) -> web.Response:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = _header_value(failure.retry_after)
        return self._respond(
            record, wire.error_body(failure.status, failure.message), failure.status, headers
        )

    def _respond(
        self,
        record: RecordedRequest,
        body: dict[str, Any],
        status: int,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        record.status = status
        record.responded_at = time.monotonic()
        return web.json_response(body, status=status, headers=headers)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the server stops meanwhile (then True)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _header_value(retry_after: float | str) -> str:
    if isinstance(retry_after, str):
        return retry_after
    return str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
