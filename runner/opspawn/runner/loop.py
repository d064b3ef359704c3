"""The agent loop: call the model, run the tools it asks for, show it the results, repeat.

One step is one model turn. Before each step the budgets are checked (`budgets.py`) and the
conversation is compacted when it grew past its budget (`conversation.py`). A turn with tool
calls runs them in parallel through the task's `ToolRegistry` (which caps how many run at
once, refuses what is not allowed and turns every failure into an error result the model
sees); a turn without tool calls is the final answer, checked against the output schema when
the task has one (`output.py`). The loop ends with a `RunOutcome` whose reason says why.

Events: `step`, `llm_call` and `usage` for each model turn, `tool_call`/`tool_result` for each
tool call (from the registry's audit records), `memory` for a compaction, `log` for warnings.
The runner entrypoint emits `started` before and `result`/`error`/`finished` after.

`terminate()` (on SIGTERM) cancels the model call or tool calls in flight and ends the run with
reason Terminated; events are never cut half-way, so the stream stays consistent.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.api.events import (
    LlmCallPayload,
    LogPayload,
    MemoryPayload,
    StepPayload,
    UsagePayload,
)
from opspawn.runner.budgets import Budgets, BudgetStop
from opspawn.runner.conversation import Conversation
from opspawn.runner.exits import ExitReason, RunOutcome
from opspawn.runner.model.base import ModelClient
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import DeadlineExceededError, ModelAuthError, ModelError
from opspawn.runner.model.ledger import UsageLedger
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from opspawn.runner.output import OutputContract
from opspawn.runner.prompt import goal_message, system_message
from opspawn.runner.sink import EventSink
from opspawn.runner.stall import StallDetector
from opspawn.runner.tools.audit import ToolAuditRecord, audit_payload
from opspawn.runner.tools.registry import ToolRegistry

T = TypeVar("T")


@dataclass(frozen=True)
class LoopSettings:
    """Everything the loop takes from the task spec."""

    system: Message
    goal: Message
    budgets: Budgets
    max_repeated_tool_calls: int
    max_output_repairs: int
    memory_max_tokens: int
    output: OutputContract | None

    @classmethod
    def from_spec(
        cls,
        spec: AgentTaskSpec,
        deadline: Deadline,
        output: OutputContract | None,
        memories: Sequence[str] = (),
    ) -> LoopSettings:
        """The settings of `spec`; `output` is its parsed outputSchema, if it has one, and
        `memories` the long-term memories recalled for its goal."""
        return cls(
            system=system_message(output.schema if output else None),
            goal=goal_message(spec, memories),
            budgets=Budgets.from_limits(spec.limits, deadline),
            max_repeated_tool_calls=spec.limits.max_repeated_tool_calls,
            max_output_repairs=spec.limits.max_output_repairs,
            memory_max_tokens=spec.memory.short_term.max_tokens,
            output=output,
        )


class _TerminatedError(Exception):
    """Raised inside the loop when `terminate()` interrupted the work in flight."""


class AgentLoop:
    """Carries out one task attempt with one model.

    Build the tool registry with `record_tool_use` as its audit hook, then `await run(tools)`.
    """

    def __init__(
        self,
        *,
        model: ModelClient,
        events: EventSink,
        ledger: UsageLedger,
        settings: LoopSettings,
    ) -> None:
        self._model = model
        self._events = events
        self._ledger = ledger
        self._settings = settings
        self._budgets = settings.budgets
        self._conversation = Conversation(
            settings.system, settings.goal, max_tokens=settings.memory_max_tokens
        )
        self._stall = StallDetector(settings.max_repeated_tool_calls)
        self._repairs = 0
        self._terminating = False
        self._work: asyncio.Future[Any] | None = None
        self.steps = 0
        """Model turns started so far."""

    # ----------------------------------------------------------------------- control

    def terminate(self) -> None:
        """Stop at the next safe point: cancel the model or tool calls in flight, if any."""
        self._terminating = True
        if self._work is not None:
            self._work.cancel()

    async def record_tool_use(self, record: ToolAuditRecord) -> None:
        """The registry's audit hook: every decision and outcome becomes an event."""
        await self._events.emit(audit_payload(record, step=self.steps or None))

    # ----------------------------------------------------------------------- the loop

    async def run(self, tools: ToolRegistry) -> RunOutcome:
        """Run until the goal is reached or something stops the run."""
        try:
            offered = [
                ToolSpec(name=d.name, description=d.description, parameters=dict(d.input_schema))
                for d in tools.definitions()
            ]
        except ValidationError as error:
            return self._outcome(
                ExitReason.INVALID_INPUT, f"a tool cannot be offered to the model: {error}"
            )
        if self._budgets.cost_unenforceable(self._ledger):
            await self._warn(
                f"limits.maxCostUSD is set, but the price of {self._ledger.provider} model "
                f"{self._ledger.model!r} is unknown: the cost budget is not enforced and no "
                "cost is reported (add the model to the price table, OPSPAWN_PRICES)"
            )
        try:
            return await self._steps(tools, offered)
        except _TerminatedError:
            return self._outcome(
                ExitReason.TERMINATED, "terminated by SIGTERM; the work in flight was cancelled"
            )

    async def _steps(self, tools: ToolRegistry, offered: Sequence[ToolSpec]) -> RunOutcome:
        while True:
            stop = self._budgets.exhausted(self.steps, self._ledger)
            if stop is not None:
                return self._stopped(stop)
            if self._terminating:
                raise _TerminatedError
            await self._compact()
            self.steps += 1
            await self._events.emit(StepPayload(step=self.steps, summary=self._step_summary()))
            answered = await self._call_model(offered)
            if isinstance(answered, RunOutcome):
                return answered
            self._conversation.append(answered.message)
            calls = answered.message.tool_calls
            outcome = await (self._use_tools(tools, calls) if calls else self._finish(answered))
            if outcome is not None:
                return outcome

    def _step_summary(self) -> str:
        if self._repairs:
            return f"repair {self._repairs} of {self._settings.max_output_repairs} of the answer"
        return "model turn"

    async def _compact(self) -> None:
        compaction = self._conversation.compact()
        if compaction is not None:
            await self._events.emit(
                MemoryPayload(
                    operation="compact", count=compaction.messages, detail=compaction.summary
                )
            )

    async def _call_model(self, offered: Sequence[ToolSpec]) -> ModelResponse | RunOutcome:
        """The model's turn, recorded in events; or how the run ends when the call failed."""
        started = time.monotonic()
        try:
            response = await self._interruptible(
                self._model.complete(
                    self._conversation.messages,
                    offered,
                    output_schema=self._settings.output.schema if self._settings.output else None,
                    deadline=self._budgets.deadline,
                )
            )
        except DeadlineExceededError as error:
            return self._outcome(
                ExitReason.TIMED_OUT, f"{self._budgets.timed_out().message}: {error}"
            )
        except ModelAuthError as error:
            return self._outcome(ExitReason.MODEL_AUTH_FAILED, str(error))
        except ModelError as error:
            reason = ExitReason.MODEL_UNAVAILABLE if error.retryable else ExitReason.MODEL_ERROR
            return self._outcome(reason, str(error))
        duration_ms = int((time.monotonic() - started) * 1000)
        entry = self._ledger.record(response.usage)
        usage = response.usage
        await self._events.emit(
            LlmCallPayload(
                step=self.steps,
                provider=self._model.provider,
                model=response.model[:256],
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                duration_ms=duration_ms,
                retries=response.attempts - 1,
                finish_reason=(response.raw_stop_reason or response.stop_reason.value)[:256],
                tool_calls=len(response.message.tool_calls),
                cost_usd=entry.cost_usd,
                text=response.message.text,
            )
        )
        total = self._ledger.total
        await self._events.emit(
            UsagePayload(
                input_tokens=total.input_tokens,
                output_tokens=total.output_tokens,
                cached_tokens=total.cached_tokens,
                reasoning_tokens=total.reasoning_tokens,
                total_tokens=total.total_tokens,
                cost_usd=self._ledger.cost_usd,
            )
        )
        return response

    async def _use_tools(self, tools: ToolRegistry, calls: Sequence[ToolCall]) -> RunOutcome | None:
        """Run the turn's tool calls and add their results; or end the run when it must."""
        stalled = self._stall.observe(calls)
        if stalled is not None:
            return self._outcome(
                ExitReason.STALLED,
                f"the model called {stalled.name!r} with the same arguments "
                f"{self._stall.limit} times in a row (limits.maxRepeatedToolCalls)",
            )
        stop = self._budgets.exhausted(self.steps, self._ledger)
        if stop is not None:
            return self._stopped(stop, note="the tool calls of the last turn were not run")
        try:
            results = await self._interruptible(self._run_tools(tools, calls))
        except TimeoutError:
            return self._stopped(self._budgets.timed_out())
        self._conversation.append(Message.tool(results))
        return None

    async def _run_tools(self, tools: ToolRegistry, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """All calls at once (the registry caps the parallelism), within the run's deadline;
        results in call order."""
        remaining = self._budgets.deadline.remaining()
        async with asyncio.timeout(None if math.isinf(remaining) else remaining):
            tasks = [
                asyncio.create_task(tools.call(call.name, _arguments(call), call.id))
                for call in calls
            ]
            try:
                outputs = await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        return [
            ToolResult(call_id=call.id, name=call.name, content=out.content, is_error=out.is_error)
            for call, out in zip(calls, outputs, strict=True)
        ]

    async def _finish(self, response: ModelResponse) -> RunOutcome | None:
        """The outcome of a final answer, or None after asking the model to repair it."""
        if response.stop_reason is StopReason.CONTENT_FILTER:
            return self._outcome(
                ExitReason.MODEL_REFUSED, "the provider withheld the answer (content filter)"
            )
        text = response.message.text
        if response.stop_reason is StopReason.MAX_TOKENS:
            await self._warn("the final answer was cut at the output-token limit")
        contract = self._settings.output
        if contract is None:
            return self._outcome(ExitReason.COMPLETED, result=text)
        checked = contract.check(text)
        if checked.valid:
            canonical = json.dumps(checked.value, ensure_ascii=False)
            return self._outcome(ExitReason.COMPLETED, result=canonical, structured=checked.value)
        problem = checked.problem or "invalid answer"
        if self._repairs >= self._settings.max_output_repairs:
            return self._outcome(
                ExitReason.OUTPUT_INVALID,
                f"{problem} (after {self._repairs} repair turns, limits.maxOutputRepairs)",
            )
        self._repairs += 1
        await self._warn(f"{problem}; asking the model to repair it")
        self._conversation.append(Message.user(contract.repair_request(problem)))
        return None

    # ----------------------------------------------------------------------- helpers

    async def _interruptible(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` so that `terminate()` can cancel it."""
        if self._terminating:
            work.close()
            raise _TerminatedError
        task = asyncio.ensure_future(work)
        self._work = task
        try:
            return await task
        except asyncio.CancelledError:
            if self._terminating and task.cancelled():
                raise _TerminatedError from None
            raise
        finally:
            self._work = None

    async def _warn(self, message: str) -> None:
        await self._events.emit(LogPayload(level="warning", message=message))

    def _stopped(self, stop: BudgetStop, note: str = "") -> RunOutcome:
        message = f"{stop.message}; {note}" if note else stop.message
        return self._outcome(stop.reason, message)

    def _outcome(
        self,
        reason: ExitReason,
        message: str = "",
        *,
        result: str | None = None,
        structured: Any = None,
    ) -> RunOutcome:
        return RunOutcome(
            reason=reason, message=message, steps=self.steps, result=result, structured=structured
        )


def _arguments(call: ToolCall) -> Any:
    """What the registry validates: the model's text when it was not a JSON object."""
    return call.malformed_arguments if call.malformed_arguments is not None else call.arguments
