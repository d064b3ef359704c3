"""Runner benchmark: the agent loop's own cost per step, and the cold start of the runner.

    .venv/bin/python bench/runner.py [--steps 500] [--rounds 7] [--starts 5]

Prints one JSON line per figure and writes them all to bench/results/runner.json. Each figure
is set against its physical limit, measured in the same run on the same machine:

- loop_step: a full run of the loop (model turn, one tool call through the registry, events,
  conversation, budgets) with a zero-latency in-process model and a no-op event sink, against
  the bare cost of the same scripted model calls; `overhead_ms_per_step` is the difference
  (target: at most 2 ms).
- loop_step_signed: the same, with every event built, signed and serialised as the JetStream
  publisher does (no network).
- cold_start_check_config: `opspawn runner --check-config`, the command runner Jobs run
  (imports, parses and validates the environment, exits; interpreter shutdown included),
  against `python -c pass`.
- cold_start_first_model_call: the runner started for real against a local NATS server and the
  fake model server, from spawn to the first model request arriving (target: at most 1 s),
  against `python -c pass`; `run_s` is spawn to exit of the whole one-step task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from figures import emit, write_results

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.api.events import (
    EventPayload,
    SigningKey,
    TaskRef,
    build_event,
    sign_event,
)
from opspawn.runner.loop import AgentLoop, LoopSettings
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.ledger import UsageLedger
from opspawn.runner.model.pricing import PriceTable
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    Role,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolSpec,
)
from opspawn.runner.sink import EventSink
from opspawn.runner.tools.base import ToolDefinition, ToolResult
from opspawn.runner.tools.registry import ToolRegistry

TARGET_STEP_MS = 2.0
TARGET_COLD_START_S = 1.0
MODEL = "gpt-4.1-mini"
SIGNING_KEY = "bench-signing-key-0123456789abcdef"
TASK = TaskRef(namespace="bench", task_name="bench", task_uid="bench-uid", attempt=1)
SPEC: dict[str, Any] = {
    "goal": "Count to a large number, one tool call at a time.",
    "model": {"provider": "openai", "name": MODEL, "apiKeySecretRef": {"name": "k", "key": "k"}},
}


# --------------------------------------------------------------------------- the loop


class ZeroLatencyModel:
    """Answers from a prepared list: one `noop` call per turn, then a final answer."""

    provider = "openai"
    model = MODEL

    def __init__(self, steps: int) -> None:
        usage = TokenUsage(input_tokens=200, output_tokens=20)
        self._responses = [
            ModelResponse(
                message=Message(
                    role=Role.ASSISTANT,
                    parts=(ToolCall(id=f"call-{n}", name="noop", arguments={"n": n}),),
                ),
                stop_reason=StopReason.TOOL_CALLS,
                usage=usage,
                model=MODEL,
            )
            for n in range(steps - 1)
        ]
        self._responses.append(
            ModelResponse(
                message=Message(role=Role.ASSISTANT, parts=(TextPart(text="done"),)),
                stop_reason=StopReason.END_TURN,
                usage=usage,
                model=MODEL,
            )
        )
        self._next = 0

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        response = self._responses[self._next]
        self._next += 1
        return response

    async def aclose(self) -> None:
        return None


class Noop:
    definition = ToolDefinition(
        name="noop",
        description="Does nothing.",
        input_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
    )
    timeout_seconds = 10.0

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult("ok")


class NoopSink:
    async def emit(self, payload: EventPayload) -> None:
        return None


class SigningSink:
    """Builds, signs and serialises every event like the publisher, without sending it."""

    def __init__(self) -> None:
        self._key = SigningKey(SIGNING_KEY.encode())
        self._sequence = 0

    async def emit(self, payload: EventPayload) -> bytes:
        self._sequence += 1
        return sign_event(build_event(TASK, self._sequence, payload), self._key).to_bytes()


async def loop_seconds(steps: int, sink: EventSink) -> float:
    spec = AgentTaskSpec.model_validate({**SPEC, "limits": {"maxSteps": steps}})
    model = ZeroLatencyModel(steps)
    loop = AgentLoop(
        model=model,
        events=sink,
        ledger=UsageLedger(PriceTable.builtin(), provider="openai", model=MODEL),
        settings=LoopSettings.from_spec(spec, Deadline.never(), None),
    )
    tools = ToolRegistry([Noop()], loop.record_tool_use)
    started = time.perf_counter()
    outcome = await loop.run(tools)
    elapsed = time.perf_counter() - started
    if outcome.steps != steps or outcome.result != "done":
        raise RuntimeError(f"the benchmark run ended early: {outcome}")
    return elapsed


async def bare_model_seconds(steps: int) -> float:
    """The same scripted model calls, made in a plain loop: the floor of a step."""
    model = ZeroLatencyModel(steps)
    messages = [Message.user("x")]
    started = time.perf_counter()
    for _ in range(steps):
        await model.complete(messages, [], output_schema=None, deadline=Deadline.never())
    return time.perf_counter() - started


def loop_figure(name: str, steps: int, rounds: int, sink_type: type[Any]) -> dict[str, Any]:
    loop_runs = [asyncio.run(loop_seconds(steps, sink_type())) for _ in range(rounds)]
    bare_runs = [asyncio.run(bare_model_seconds(steps)) for _ in range(rounds)]
    loop_ms = statistics.median(loop_runs) / steps * 1000
    bare_ms = statistics.median(bare_runs) / steps * 1000
    overhead = loop_ms - bare_ms
    return {
        "figure": name,
        "steps": steps,
        "rounds": rounds,
        "loop_ms_per_step": round(loop_ms, 4),
        "bare_model_ms_per_step": round(bare_ms, 4),
        "overhead_ms_per_step": round(overhead, 4),
        "ratio_to_bare": round(loop_ms / bare_ms, 1),
        "target_ms_per_step": TARGET_STEP_MS,
        "meets_target": overhead <= TARGET_STEP_MS,
    }


# --------------------------------------------------------------------------- cold start


RUNNER_COMMAND = (str(Path(sys.executable).with_name("opspawn")), "runner")
"""What runner Jobs run (`opspawn runner`), from this environment's scripts."""


def runner_env(
    spec: dict[str, Any], nats_url: str, model_url: str, workdir: Path
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OPSPAWN_TASK_SPEC": json.dumps(spec),
        "OPSPAWN_TASK_UID": "bench-uid",
        "OPSPAWN_TASK_NAME": "bench",
        "OPSPAWN_TASK_NAMESPACE": "bench",
        "OPSPAWN_NATS_URL": nats_url,
        "OPSPAWN_SIGNING_KEY": SIGNING_KEY,
        "OPSPAWN_MODEL_API_KEY": "sk-bench-not-a-key",
        "OPSPAWN_MODEL_BASE_URL": model_url,
        "OPSPAWN_TERMINATION_MESSAGE_PATH": str(workdir / "termination-log"),
    }


def process_seconds(argv: list[str], env: Mapping[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def cold_start_check_config(starts: int, python_pass_s: float, workdir: Path) -> dict[str, Any]:
    env = runner_env({**SPEC, "tools": {}}, "nats://127.0.0.1:1", "http://127.0.0.1:1/v1", workdir)
    argv = [*RUNNER_COMMAND, "--check-config"]
    seconds = statistics.median(process_seconds(argv, env) for _ in range(starts))
    return {
        "figure": "cold_start_check_config",
        "starts": starts,
        "seconds": round(seconds, 3),
        "python_pass_seconds": round(python_pass_s, 3),
        "ratio_to_python_pass": round(seconds / python_pass_s, 1),
        "target_seconds": TARGET_COLD_START_S,
        "meets_target": seconds <= TARGET_COLD_START_S,
    }


async def first_model_call(nats_url: str, workdir: Path) -> tuple[float, float]:
    """(spawn to first model request, spawn to exit) of one real one-step run."""
    from opspawn.fakes import FakeModelServer, Script

    script = Script.model_validate({"turns": [{"text": "done"}]})
    async with FakeModelServer(script) as server:
        env = runner_env({**SPEC, "tools": {}}, nats_url, server.openai_base_url, workdir)
        spawned = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *RUNNER_COMMAND,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        exited = time.monotonic()
        if process.returncode != 0 or not server.requests:
            raise RuntimeError(f"the runner failed ({process.returncode}): {err.decode()}")
        return server.requests[0].received_at - spawned, exited - spawned


def cold_start_run(starts: int, python_pass_s: float, workdir: Path) -> dict[str, Any]:
    import nats
    from nats.js.api import StorageType, StreamConfig

    from opspawn.api.events import STREAM_NAME, stream_subjects
    from opspawn.dev.nats import NatsServer

    server = NatsServer(workdir / "nats")
    server.start()
    try:

        async def create_stream() -> None:
            nc = await nats.connect(server.url)
            config = StreamConfig(
                name=STREAM_NAME, subjects=stream_subjects(), storage=StorageType.FILE
            )
            await nc.jetstream().add_stream(config)
            await nc.close()

        asyncio.run(create_stream())
        runs = [asyncio.run(first_model_call(server.url, workdir)) for _ in range(starts)]
    finally:
        server.stop()
    first_call = statistics.median(first for first, _ in runs)
    whole = statistics.median(total for _, total in runs)
    return {
        "figure": "cold_start_first_model_call",
        "starts": starts,
        "seconds": round(first_call, 3),
        "run_s": round(whole, 3),
        "python_pass_seconds": round(python_pass_s, 3),
        "ratio_to_python_pass": round(first_call / python_pass_s, 1),
        "target_seconds": TARGET_COLD_START_S,
        "meets_target": first_call <= TARGET_COLD_START_S,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="steps per loop run (<= 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="loop runs per figure")
    parser.add_argument("--starts", type=int, default=5, help="process starts per figure")
    args = parser.parse_args()

    figures: list[dict[str, Any]] = []
    for name, sink in (("loop_step", NoopSink), ("loop_step_signed", SigningSink)):
        emit(figures, loop_figure(name, args.steps, args.rounds, sink))
    python_pass = statistics.median(
        process_seconds([sys.executable, "-c", "pass"]) for _ in range(args.starts)
    )
    with tempfile.TemporaryDirectory(prefix="opspawn-bench-") as tmp:
        workdir = Path(tmp)
        for measure in (cold_start_check_config, cold_start_run):
            emit(figures, measure(args.starts, python_pass, workdir))
    write_results(
        "runner",
        figures,
        f"medians of {args.rounds} loop runs of {args.steps} steps and of {args.starts} process"
        " starts, each figure the median of its own runs",
    )


if __name__ == "__main__":
    main()
