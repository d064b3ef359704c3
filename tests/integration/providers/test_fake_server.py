"""The fake model server itself: the default dev script, script files, request checks, CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from opspawn.fakes import FakeModelServer, load_script
from opspawn.runner.model import Deadline, Message, ModelClient, ToolResult, ToolSpec

pytestmark = pytest.mark.anyio

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]
Connect = Callable[..., ModelClient]
PROVIDERS = ("openai", "anthropic", "google")
CALCULATOR = ToolSpec(
    name="calculator",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}, "precision": {"type": "integer"}},
        "required": ["expression"],
    },
)
STARTUP_SECONDS = 20


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_default_script_calls_the_first_tool_then_answers(
    provider: str, connect: Connect
) -> None:
    async with FakeModelServer() as server:
        client = connect(server, provider)
        ask = [Message.user("Compute something.")]

        first = await client.complete(
            ask, [CALCULATOR], output_schema=None, deadline=Deadline.after(30)
        )
        (call,) = first.message.tool_calls
        assert call.name == "calculator"
        jsonschema.validate(call.arguments, CALCULATOR.parameters)

        result = Message.tool([ToolResult(call_id=call.id, name=call.name, content="42")])
        final = await client.complete(
            [*ask, first.message, result],
            [CALCULATOR],
            output_schema=None,
            deadline=Deadline.after(30),
        )
        assert final.message.text == "The mock model finished the task after one tool call."
        assert final.message.tool_calls == ()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_default_script_answers_structured_requests_with_a_schema_sample(
    provider: str, connect: Connect
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1},
        },
        "required": ["title", "score", "tags"],
        "additionalProperties": False,
    }
    async with FakeModelServer() as server:
        client = connect(server, provider)
        response = await client.complete(
            [Message.user("Summarise.")], [], output_schema=schema, deadline=Deadline.after(30)
        )
    jsonschema.validate(json.loads(response.message.text), schema)


async def test_script_files_in_yaml_and_json(tmp_path: Path) -> None:
    script = {"turns": [{"text": "from a file", "usage": {"input_tokens": 7, "output_tokens": 3}}]}
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    (tmp_path / "script.json").write_text(json.dumps(script))

    assert load_script(tmp_path / "script.yaml") == load_script(tmp_path / "script.json")
    assert load_script(tmp_path / "script.yaml").turns[0].text == "from a file"


async def test_requests_a_real_provider_would_refuse_get_400(serve: Serve) -> None:
    server = await serve({"turns": [{"text": "ok"}]})
    body = {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "x", "content": "?"},
        ],
    }
    url = f"{server.openai_base_url}/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as reply:
        assert reply.status == 400
        error = await reply.json()
    assert "unknown tool_call_id 'x'" in error["error"]["message"]
    assert server.requests[0].status == 400


async def test_mock_model_command_serves_until_terminated(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump({"turns": [{"text": "hello from the command"}]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from opspawn.fakes.cli import mock_model; mock_model()",
        "--port",
        "0",
        "--script",
        str(script),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_SECONDS)
        url = line.decode().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/messages", json=body) as reply,
        ):
            answer = await reply.json()
        assert answer["content"] == [{"type": "text", "text": "hello from the command"}]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), STARTUP_SECONDS) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
