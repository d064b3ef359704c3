"""An in-process scripted model, test tools and an event recorder for the loop's unit tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.api.events import EventPayload, EventType
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
from opspawn.runner.output import OutputContract
from opspawn.runner.tools.base import Tool, ToolDefinition, ToolError, ToolResult
from opspawn.runner.tools.registry import ToolRegistry

PROVIDER = "openai"
MODEL = "gpt-4.1-mini"
USAGE = TokenUsage(input_tokens=100, output_tokens=20)

_ids = itertools.count(1)


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call-{next(_ids)}", name=name, arguments=arguments)


def tools_turn(*calls: ToolCall, usage: TokenUsage = USAGE) -> ModelResponse:
    return ModelResponse(
        message=Message(role=Role.ASSISTANT, parts=tuple(calls)),
        stop_reason=StopReason.TOOL_CALLS,
        usage=usage,
        model=MODEL,
    )


def text_turn(
    text: str, *, stop: StopReason = StopReason.END_TURN, usage: TokenUsage = USAGE
) -> ModelResponse:
    return ModelResponse(
        message=Message(role=Role.ASSISTANT, parts=(TextPart(text=text),)),
        stop_reason=stop,
        usage=usage,
        model=MODEL,
    )


Step = ModelResponse | Exception | Callable[[int], ModelResponse]
"""What the scripted model does on a call: answer, raise, or answer by call number."""


class ScriptedModel:
    """A `ModelClient` that plays `steps` in order (the last one again past the end).

    Records what it was sent. With `block_at`, the call with that number (from 1) waits
    until cancelled, after setting `blocked`.
    """

    def __init__(self, steps: Sequence[Step], *, block_at: int | None = None) -> None:
        self.steps = list(steps)
        self.block_at = block_at
        self.blocked = asyncio.Event()
        self.sent: list[list[Message]] = []
        self.offered: list[list[ToolSpec]] = []
        self.schemas: list[Mapping[str, Any] | None] = []

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def model(self) -> str:
        return MODEL

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        self.sent.append(list(messages))
        self.offered.append(list(tools))
        self.schemas.append(output_schema)
        number = len(self.sent)
        if number == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()
        step = self.steps[min(number, len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, ModelResponse):
            return step
        return step(number)

    async def aclose(self) -> None:
        return None


@dataclass
class RecordingSink:
    """Keeps every emitted payload."""

    payloads: list[EventPayload] = field(default_factory=list)

    async def emit(self, payload: EventPayload) -> None:
        self.payloads.append(payload)

    def types(self) -> list[EventType]:
        return [type(payload).event_type for payload in self.payloads]

    def of(self, cls: type[Any]) -> list[Any]:
        return [payload for payload in self.payloads if isinstance(payload, cls)]


OBJECT = {"type": "object", "properties": {"text": {"type": "string"}}}


class Echo:
    """Answers with its `text` argument; tracks how many calls run at once."""

    def __init__(self, name: str = "echo") -> None:
        self.definition = ToolDefinition(name=name, description="Echo text.", input_schema=OBJECT)
        self.timeout_seconds = 5.0
        self.calls: list[Mapping[str, Any]] = []
        self.running = 0
        self.most_at_once = 0

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        self.calls.append(arguments)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        for _ in range(5):  # hold the slot across several scheduler rounds
            await asyncio.sleep(0)
        self.running -= 1
        return ToolResult(str(arguments.get("text", "")))


class Broken:
    """Always fails."""

    definition = ToolDefinition(name="broken", description="Fails.", input_schema=OBJECT)
    timeout_seconds = 5.0

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        raise ToolError("the disk is on fire")


class Hanging:
    """Never answers (until cancelled); `started` is set when a call begins."""

    definition = ToolDefinition(name="hang", description="Hangs.", input_schema=OBJECT)
    timeout_seconds = 60.0

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolResult("unreachable")


def task_spec(**fields: Any) -> AgentTaskSpec:
    base: dict[str, Any] = {
        "goal": "Do the thing.",
        "model": {
            "provider": PROVIDER,
            "name": MODEL,
            "apiKeySecretRef": {"name": "k", "key": "k"},
        },
    }
    return AgentTaskSpec.model_validate({**base, **fields})


@dataclass
class Harness:
    """A loop over a scripted model, its tools and its recorded events."""

    loop: AgentLoop
    model: ScriptedModel
    sink: RecordingSink
    registry: ToolRegistry
    ledger: UsageLedger


def harness(
    model: ScriptedModel,
    tools: Sequence[Tool] = (),
    *,
    spec: AgentTaskSpec | None = None,
    deadline: Deadline | None = None,
    prices: PriceTable | None = None,
) -> Harness:
    spec = spec or task_spec()
    sink = RecordingSink()
    output = OutputContract.parse(spec.output_schema) if spec.output_schema else None
    ledger = UsageLedger(prices or PriceTable.builtin(), provider=PROVIDER, model=MODEL)
    loop = AgentLoop(
        model=model,
        events=sink,
        ledger=ledger,
        settings=LoopSettings.from_spec(spec, deadline or Deadline.never(), output),
    )
    registry = ToolRegistry(
        tools, loop.record_tool_use, max_parallel_calls=spec.tools.max_parallel_calls
    )
    return Harness(loop, model, sink, registry, ledger)
