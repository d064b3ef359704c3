"""Fixtures of the runner-process tests: a real NATS server with the event stream, the fake
model server, and the runner entrypoint started as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from opspawn.api.events import (
    STREAM_NAME,
    RunnerEvent,
    SigningKey,
    verify_event,
)
from opspawn.dev.nats import NatsServer
from opspawn.fakes import FakeModelServer

SIGNING_KEY = "integration-signing-key-0123456789"
API_KEY = "sk-runner-integration-secret-7f3a9c"
TASK_UID = "9a1f3c2e-0d4b-4e6f-8a7b-1c2d3e4f5a6b"
NAMESPACE = "team-a"
TASK_NAME = "two-tools"
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash"}
RUN_TIMEOUT = 60.0


@dataclass
class StoredEvent:
    event: RunnerEvent
    raw: bytes


async def stored_events(nc: NatsClient) -> list[StoredEvent]:
    """Every event in the stream, in stream order, each verified with the task's key."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM_NAME)
    key = SigningKey(SIGNING_KEY.encode())
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(STREAM_NAME, seq)
        except NotFoundError:
            continue
        assert msg.data is not None and msg.subject is not None
        out.append(StoredEvent(verify_event(msg.data, key, subject=msg.subject), msg.data))
    return out


def task_spec(provider: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "goal": "What time is it, and what is 6*7?",
        "model": {
            "provider": provider,
            "name": MODELS[provider],
            "apiKeySecretRef": {"name": "model-key", "key": "api-key"},
        },
        "tools": {"builtin": [{"name": "current_time"}, {"name": "calculator"}]},
    }
    return {**spec, **fields}


def runner_env(
    spec: dict[str, Any], *, nats_url: str, model_url: str, termination_path: Path
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OPSPAWN_TASK_SPEC": json.dumps(spec),
        "OPSPAWN_TASK_UID": TASK_UID,
        "OPSPAWN_TASK_NAME": TASK_NAME,
        "OPSPAWN_TASK_NAMESPACE": NAMESPACE,
        "OPSPAWN_ATTEMPT": "1",
        "OPSPAWN_NATS_URL": nats_url,
        "OPSPAWN_SIGNING_KEY": SIGNING_KEY,
        "OPSPAWN_MODEL_API_KEY": API_KEY,
        "OPSPAWN_MODEL_BASE_URL": model_url,
        "OPSPAWN_TERMINATION_MESSAGE_PATH": str(termination_path),
    }


def model_url(server: FakeModelServer, provider: str) -> str:
    return server.openai_base_url if provider.startswith("openai") else server.url


@dataclass
class RunnerProcess:
    """The runner entrypoint running as a child process."""

    process: asyncio.subprocess.Process
    termination_path: Path
    stdout: str = ""
    stderr: str = ""

    @classmethod
    async def start(cls, env: dict[str, str], termination_path: Path) -> RunnerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "opspawn.runner",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process, termination_path)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def finish(self, within: float = RUN_TIMEOUT) -> int:
        """Wait for the exit (killing the process past `within` seconds); the exit code."""
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            pytest.fail(f"the runner did not exit within {within:g}s")
        self.stdout, self.stderr = out.decode(), err.decode()
        assert self.process.returncode is not None
        return self.process.returncode

    def termination_message(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.termination_path.read_text())
        return message


Run = Callable[..., Awaitable[RunnerProcess]]


@pytest.fixture
async def start_runner(
    tmp_path: Path, nats_server: NatsServer, event_stream: NatsClient
) -> AsyncIterator[Run]:
    """Start the runner for a spec against a fake server; every runner is gone at the end."""
    started: list[RunnerProcess] = []

    async def start(spec: dict[str, Any], server: FakeModelServer, **env: str) -> RunnerProcess:
        path = tmp_path / f"termination-{len(started)}"
        provider = spec["model"]["provider"]
        environment = runner_env(
            spec,
            nats_url=nats_server.url,
            model_url=model_url(server, provider),
            termination_path=path,
        )
        environment = {**environment, **env}
        # The task's NATS user, as the operator would mint it into the per-task Secret.
        environment.setdefault(
            "OPSPAWN_NATS_CREDENTIALS",
            nats_server.issuer.runner_credentials(
                environment["OPSPAWN_TASK_NAMESPACE"],
                environment["OPSPAWN_TASK_UID"],
                time.time() + 3600,
            ),
        )
        runner = await RunnerProcess.start(environment, path)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.process.returncode is None:
            runner.process.kill()
            await runner.process.wait()
