"""One attempt of a task, from connecting to NATS to the last event, under SIGTERM handling.

1. Connect the event publisher (without it nothing can be reported: the termination message
   is then the only record).
2. Emit `started`; refuse an unusable task input (reason InvalidInput) with an `error` event.
3. Build the model client, connect the MCP servers, open long-term memory (recalling what is
   relevant to the goal), build the tool registry, run the loop.
4. Emit `result` (when there is one), `error` (unless the run completed) and `finished`; wait
   until JetStream has acknowledged every event; write the termination message.

SIGTERM (or SIGINT) during the loop makes it stop at its next safe point (the model or tool
calls in flight are cancelled); during setup, setup is cancelled. Either way the attempt ends
with reason Terminated, and flushing the events is bounded by SHUTDOWN_FLUSH_SECONDS so the
runner exits within the Pod's grace period. A second signal is ignored (SIGKILL follows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.api.events import StartedPayload
from opspawn.runner.config import NATS_URL, ConfigError, RunIdentity, TaskInput
from opspawn.runner.events import EventDeliveryError, EventPublisher, PublisherSettings
from opspawn.runner.exits import ExitReason, RunOutcome
from opspawn.runner.loop import AgentLoop, LoopSettings
from opspawn.runner.memory.session import MemoryRequiredError, long_term_memory
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.ledger import UsageLedger
from opspawn.runner.redact import Redactor
from opspawn.runner.report import report_outcome, termination_message
from opspawn.runner.termination import write_termination_message
from opspawn.runner.tools.base import Tool
from opspawn.runner.tools.builtin import BUILTIN_FACTORIES, build_registry
from opspawn.runner.tools.registry import ToolConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHUTDOWN_FLUSH_SECONDS = 20.0
"""After SIGTERM, wait at most this long for JetStream to acknowledge the last events (the
default terminationGracePeriodSeconds is 30)."""

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Attempt:
    """Carries out one attempt; `await run()` returns the exit code."""

    def __init__(
        self,
        identity: RunIdentity,
        task: TaskInput | ConfigError,
        *,
        deadline: Deadline,
        redact: Redactor,
        env: Mapping[str, str],
        publisher_settings: PublisherSettings | None = None,
    ) -> None:
        self._identity = identity
        self._task = task
        self._deadline = deadline
        self._redact = redact
        self._env = env
        self._publisher_settings = publisher_settings
        self._started = time.monotonic()
        self._agent: AgentLoop | None = None
        self._work: asyncio.Task[Any] | None = None
        self._terminated = False

    async def run(self) -> RunOutcome:
        """Carry out the attempt; how it ended (the termination message is written)."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal)
        try:
            outcome = await self._run()
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
        write_termination_message(termination_message(outcome, self._redact), self._env)
        return outcome

    async def _run(self) -> RunOutcome:
        publisher = await self._supervised(self._connect())
        if isinstance(publisher, RunOutcome):
            return publisher
        outcome = await self._supervised(self._guarded(publisher))
        return await self._report(publisher, outcome)

    # ----------------------------------------------------------------------- signals

    def _on_signal(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        logger.warning("termination requested: stopping at the next safe point")
        if self._agent is not None:
            self._agent.terminate()
        elif self._work is not None:
            self._work.cancel()

    async def _supervised(self, work: Coroutine[Any, Any, T]) -> T | RunOutcome:
        """Run `work` as the current work; a signal before the loop runs cancels it."""
        if self._terminated:
            work.close()
            return self._outcome(ExitReason.TERMINATED, "terminated before the run started")
        task = asyncio.ensure_future(work)
        self._work = task
        try:
            return await task
        except asyncio.CancelledError:
            if self._terminated and task.cancelled():
                return self._outcome(ExitReason.TERMINATED, "terminated while setting up")
            raise
        finally:
            self._work = None

    # ----------------------------------------------------------------------- phases

    async def _connect(self) -> EventPublisher | RunOutcome:
        identity = self._identity
        try:
            return await EventPublisher.connect(
                identity.nats_servers,
                identity.task,
                identity.signing_key,
                self._publisher_settings,
                credentials=(
                    identity.nats_credentials.get_secret_value()
                    if identity.nats_credentials
                    else None
                ),
            )
        except Exception as error:  # whatever stops the connection, NATS is unavailable
            return self._outcome(
                ExitReason.EVENTS_UNDELIVERED,
                f"cannot connect to NATS ({NATS_URL}): {type(error).__name__}: {error}",
            )

    async def _guarded(self, publisher: EventPublisher) -> RunOutcome:
        """The work of the attempt, every failure mapped to its reason."""
        try:
            return await self._work_on_task(publisher)
        except EventDeliveryError as error:
            return self._outcome(ExitReason.EVENTS_UNDELIVERED, str(error))
        except ToolConfigError as error:
            return self._outcome(ExitReason.INVALID_INPUT, str(error))
        except ToolServerUnavailableError as error:
            return self._outcome(ExitReason.TOOL_SERVER_UNAVAILABLE, str(error))
        except MemoryRequiredError as error:
            return self._outcome(ExitReason.MEMORY_UNAVAILABLE, str(error))
        except Exception as error:  # a bug: reported and mapped, never a traceback exit
            logger.exception("the runner failed")
            return self._outcome(ExitReason.INTERNAL_ERROR, f"{type(error).__name__}: {error}")

    async def _work_on_task(self, publisher: EventPublisher) -> RunOutcome:
        task = self._task
        spec = task.spec if isinstance(task, TaskInput) else None
        await publisher.emit(
            StartedPayload(
                model_provider=spec.model.provider.value if spec else "",
                model_name=spec.model.name if spec else "",
                runner_version=_runner_version(),
                pod_name=self._identity.pod_name,
            )
        )
        if isinstance(task, ConfigError):
            return self._outcome(ExitReason.INVALID_INPUT, str(task))
        from opspawn.runner.model.factory import build_model_client

        api_key = task.model_api_key.get_secret_value() if task.model_api_key else None
        try:
            model = build_model_client(
                task.spec.model, api_key=api_key, base_url=task.model_base_url
            )
        except ValueError as error:
            return self._outcome(ExitReason.INVALID_INPUT, str(error))
        try:
            async with (
                _tool_servers(task.spec) as server_tools,
                long_term_memory(
                    task.spec,
                    task=self._identity.task,
                    endpoint=task.memory,
                    api_key=api_key,
                    base_url=task.model_base_url,
                    events=publisher,
                ) as memory,
            ):
                agent = AgentLoop(
                    model=model,
                    events=publisher,
                    ledger=UsageLedger(
                        task.prices, provider=model.provider, model=task.spec.model.name
                    ),
                    settings=LoopSettings.from_spec(
                        task.spec, self._deadline, task.output, memory.context
                    ),
                )
                tools = build_registry(
                    task.spec.tools,
                    agent.record_tool_use,
                    extra_tools=server_tools,
                    factories={**BUILTIN_FACTORIES, **memory.tool_factories},
                )
                self._agent = agent
                return await agent.run(tools)
        finally:
            await model.aclose()

    async def _report(self, publisher: EventPublisher, outcome: RunOutcome) -> RunOutcome:
        """Publish the end of the attempt and wait for the acknowledgements."""
        duration_ms = int((time.monotonic() - self._started) * 1000)
        bound = SHUTDOWN_FLUSH_SECONDS if self._terminated else None
        try:
            async with asyncio.timeout(bound):
                if outcome.reason is not ExitReason.EVENTS_UNDELIVERED:
                    await report_outcome(
                        publisher, outcome, duration_ms=duration_ms, redact=self._redact
                    )
                await publisher.close()
        except EventDeliveryError as error:
            if outcome.reason in (ExitReason.TERMINATED, ExitReason.EVENTS_UNDELIVERED):
                return outcome
            return RunOutcome(
                reason=ExitReason.EVENTS_UNDELIVERED,
                message=f"{error} (the run ended with {outcome.reason.value})",
                steps=outcome.steps,
                result=outcome.result,
                structured=outcome.structured,
            )
        except TimeoutError:
            logger.warning(
                "JetStream did not acknowledge the last events within %gs of the termination "
                "request",
                SHUTDOWN_FLUSH_SECONDS,
            )
        return outcome

    def _outcome(self, reason: ExitReason, message: str) -> RunOutcome:
        steps = self._agent.steps if self._agent is not None else 0
        return RunOutcome(reason=reason, message=message, steps=steps)


class ToolServerUnavailableError(RuntimeError):
    """An MCP server of the task could not be started, reached or listed."""


@contextlib.asynccontextmanager
async def _tool_servers(spec: AgentTaskSpec) -> AsyncIterator[Sequence[Tool]]:
    """The tools of the task's MCP servers, connected for the duration (none: no MCP import)."""
    if not spec.tools.mcp_servers:
        yield []
        return
    from opspawn.runner.mcp_client import McpConnectError, McpToolset

    async with contextlib.AsyncExitStack() as stack:
        try:
            toolset = await stack.enter_async_context(McpToolset(spec.tools.mcp_servers))
        except McpConnectError as error:
            raise ToolServerUnavailableError(str(error)) from None
        yield toolset.tools()


def _runner_version() -> str:
    try:
        return importlib.metadata.version("opspawn")
    except importlib.metadata.PackageNotFoundError:
        return ""
