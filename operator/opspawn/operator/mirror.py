"""The status mirror: runner events → `status.steps`, `lastEvent`, `usage`, `result`.

Verified events update an in-memory summary per task at once; a flusher writes each task's
summary at once when it has been quiet, then at most once per `interval` and never while its
previous write is still in flight (a slow apiserver gets fewer, not more, writes), and only
the fields that changed: a runner that emits hundreds of events a second costs its task a few
status writes a second, and a quiet one sees its status follow within a round trip. The mirror
works from the events it has verified, whether or not the audit store has committed them yet,
so status keeps moving while Postgres is down.

`usage` is the sum over the task's attempts (each attempt's `usage` event carries that
attempt's running total); `steps` and `lastEvent` are those of the current attempt.

Long-term memory events set the `MemoryAvailable` condition: False with reason
MemoryUnavailable when the runner reports the store unavailable, True once it answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.api import conditions
from opspawn.api.agenttask import (
    RESULT_PREVIEW_MAX_CHARS,
    ConditionStatus,
    LastEvent,
    ResultSummary,
    Usage,
)
from opspawn.api.events import (
    ErrorPayload,
    FinishedPayload,
    LlmCallPayload,
    LogPayload,
    MemoryPayload,
    ResultPayload,
    RunnerEvent,
    StepPayload,
    ToolCallPayload,
    UsagePayload,
)
from opspawn.operator.kube import KubeClient
from opspawn.operator.lifecycle import rfc3339
from opspawn.operator.store import Store
from opspawn.operator.views import TaskView

logger = logging.getLogger(__name__)

SUMMARY_MAX_CHARS = 256
CONFLICT = 409
MEMORY_MESSAGE_MAX_CHARS = 1024


def summarise(event: RunnerEvent) -> str:
    """One short line about an event, for `status.lastEvent.summary`."""
    payload = event.payload
    match payload:
        case StepPayload():
            text = f"step {payload.step}: {payload.summary}"
        case LlmCallPayload():
            text = "model call"
        case ToolCallPayload():
            text = f"tool call {payload.tool}" + ("" if payload.allowed else " (refused)")
        case UsagePayload():
            text = f"{payload.total_tokens} tokens"
        case LogPayload():
            text = f"{payload.level}: {payload.message}"
        case MemoryPayload(operation="unavailable"):
            text = f"memory unavailable: {payload.detail}"
        case MemoryPayload():
            text = f"memory {payload.operation}: {payload.count}"
        case ErrorPayload():
            text = f"{payload.reason}: {payload.message}"
        case FinishedPayload():
            text = f"finished: {payload.reason} after {payload.steps} steps"
        case ResultPayload():
            text = f"result of {payload.size_bytes} bytes"
        case _:
            text = event.type.value
    return text.replace("\n", " ")[:SUMMARY_MAX_CHARS]


@dataclass
class _TaskSummary:
    namespace: str
    attempt: int = 0
    steps: int = 0
    last_event: RunnerEvent | None = None
    """The newest event of the attempt; made into `lastEvent` only when written."""
    usage_by_attempt: dict[int, UsagePayload] = field(default_factory=dict)
    result: ResultSummary | None = None
    memory: tuple[ConditionStatus, str, str] | None = None
    """`MemoryAvailable` (status, reason, message) as the last long-term memory event says."""
    dirty: bool = False

    def usage(self) -> Usage:
        attempts = self.usage_by_attempt.values()
        costs = [u.cost_usd for u in attempts if u.cost_usd is not None]
        return Usage(
            input_tokens=sum(u.input_tokens for u in attempts),
            output_tokens=sum(u.output_tokens for u in attempts),
            cached_tokens=sum(u.cached_tokens for u in attempts),
            reasoning_tokens=sum(u.reasoning_tokens for u in attempts),
            total_tokens=sum(u.total_tokens for u in attempts),
            cost_usd=round(sum(costs), 6) if costs else None,
        )

    def observe(self, event: RunnerEvent) -> None:
        self.dirty = True
        if event.attempt < self.attempt:
            return  # an older attempt's straggler: the current attempt's view wins
        if event.attempt > self.attempt:
            self.attempt, self.steps, self.last_event = event.attempt, 0, None
        payload = event.payload
        if isinstance(payload, StepPayload):
            self.steps = max(self.steps, payload.step)
        elif isinstance(payload, UsagePayload):
            self.usage_by_attempt[event.attempt] = payload
        elif isinstance(payload, MemoryPayload) and payload.operation != "compact":
            self.memory = _memory_condition(payload)
        elif isinstance(payload, ResultPayload):
            self.result = ResultSummary(
                preview=payload.text[:RESULT_PREVIEW_MAX_CHARS],
                truncated=len(payload.text) > RESULT_PREVIEW_MAX_CHARS or event.truncated,
                size_bytes=payload.size_bytes,
                sha256=payload.sha256,
            )
        if self.last_event is None or event.sequence >= self.last_event.sequence:
            self.last_event = event

    def status_fields(self, task: TaskView) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "steps": self.steps,
            "usage": self.usage().model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        if self.last_event is not None:
            last = self.last_event
            fields["lastEvent"] = LastEvent(
                type=last.type.value,
                sequence=last.sequence,
                time=rfc3339(last.time),
                summary=summarise(last),
            ).model_dump(mode="json", by_alias=True)
        if self.result is not None:
            fields["result"] = self.result.model_dump(mode="json", by_alias=True, exclude_none=True)
        memory_conditions = self._memory_conditions(task)
        if memory_conditions is not None:
            fields["conditions"] = memory_conditions
        return fields

    def _memory_conditions(self, task: TaskView) -> list[dict[str, Any]] | None:
        """The task's conditions with `MemoryAvailable` set as the events say (None when
        they already say so). A finished task's conditions are left alone: the mirror never
        writes over the final `Succeeded`."""
        if self.memory is None or not task.status_readable or task.finished:
            return None
        status, reason, message = self.memory
        current = task.status.conditions
        existing = conditions.find(current, conditions.MEMORY_AVAILABLE)
        if existing is not None and (existing.status, existing.reason, existing.message) == (
            status,
            reason,
            message,
        ):
            return None
        updated = conditions.set_condition(
            current,
            conditions.MEMORY_AVAILABLE,
            status,
            reason,
            message,
            now=rfc3339(datetime.now(UTC)),
            observed_generation=task.generation,
        )
        return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in updated]


def _memory_condition(payload: MemoryPayload) -> tuple[ConditionStatus, str, str]:
    if payload.operation == "unavailable":
        message = payload.detail[:MEMORY_MESSAGE_MAX_CHARS] or "long-term memory is unavailable"
        return ConditionStatus.FALSE, "MemoryUnavailable", message
    return ConditionStatus.TRUE, "MemoryAnswered", "long-term memory answers"


class StatusMirror:
    """Writes each task's summary on the leading edge (a task quiet for `interval` is written
    at once) and then at most once per `interval` (trailing edge), only what changed.

    At most `writes_in_flight` writes run at once; tasks due for a write wait their turn in
    the order they became due. The apiserver spends several milliseconds of CPU on a status
    write, so a burst of hundreds at once only queues inside it and delays all of them: a few
    at a time keeps each round trip short and the oldest news goes out first."""

    def __init__(
        self, kube: KubeClient, store: Store, interval: float, writes_in_flight: int
    ) -> None:
        self._kube = kube
        self._store = store
        self._interval = interval
        self._writes_in_flight = writes_in_flight
        self._tasks: dict[str, _TaskSummary] = {}
        self._scheduled: dict[str, asyncio.TimerHandle] = {}
        self._due: dict[str, None] = {}
        """Tasks whose interval has passed, waiting for a free write (insertion-ordered)."""
        self._last_write: dict[str, float] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}

    def observe(self, events: Iterable[RunnerEvent]) -> None:
        for event in events:
            summary = self._tasks.get(event.task_uid)
            if summary is None:
                summary = self._tasks[event.task_uid] = _TaskSummary(namespace=event.namespace)
            summary.observe(event)
            self._schedule(event.task_uid)

    def _schedule(self, uid: str) -> None:
        if uid in self._scheduled or uid in self._due or uid in self._writes:
            return  # a write in flight reschedules itself when it ends (`_write_ended`)
        loop = asyncio.get_running_loop()
        when = self._last_write.get(uid, 0.0) + self._interval
        self._scheduled[uid] = loop.call_at(max(loop.time(), when), self._make_due, uid)

    def _make_due(self, uid: str) -> None:
        del self._scheduled[uid]
        self._due[uid] = None
        self._start_writes()

    def _start_writes(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due and len(self._writes) < self._writes_in_flight:
            uid = next(iter(self._due))
            del self._due[uid]
            self._last_write[uid] = loop.time()
            write = asyncio.create_task(self._flush(uid))
            self._writes[uid] = write
            write.add_done_callback(functools.partial(self._write_ended, uid))

    def _write_ended(self, uid: str, _write: asyncio.Task[None]) -> None:
        """One write per task at a time: events that came in meanwhile get the next one."""
        del self._writes[uid]
        summary = self._tasks.get(uid)
        if summary is not None and summary.dirty:
            self._schedule(uid)
        self._start_writes()

    async def run(self) -> None:
        """Nothing to do but wait: writes are scheduled by `observe`. Cancelling this stops
        the pending ones and waits until they have stopped (so that none is left to run into a
        closed API client)."""
        try:
            await asyncio.Event().wait()
        finally:
            for timer in self._scheduled.values():
                timer.cancel()
            self._due.clear()
            writes = list(self._writes.values())
            for write in writes:
                write.cancel()
            await asyncio.gather(*writes, return_exceptions=True)

    def _forget(self, uid: str) -> None:
        self._tasks.pop(uid, None)
        self._last_write.pop(uid, None)

    async def _flush(self, uid: str) -> None:
        summary = self._tasks.get(uid)
        task = self._store.task(uid)
        if summary is None:
            return
        summary.dirty = False
        if task is None or task.deleting:
            self._forget(uid)
            return
        patch = _changed(task.raw_status, summary.status_fields(task))
        if patch:
            # `conditions` is a list the reconciler writes too: a patch of it must not replace
            # a newer list than the one it was computed from.
            precondition = task.resource_version if "conditions" in patch else None
            try:
                patched = await self._kube.patch_task_status(
                    task.namespace, task.name, patch, resource_version=precondition
                )
            except Exception as error:
                if not (isinstance(error, ApiException) and error.status == CONFLICT):
                    logger.exception(
                        "could not mirror events into the status of %s", task.reference
                    )
                summary.dirty = True  # written again one interval later (`_write_ended`)
                return
            if patched is not None:
                task = TaskView.from_body(patched)
                self._store.put_task(task)
        if task.finished and not summary.dirty:
            self._forget(uid)  # nothing more will come that status shows


def _changed(current: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if current.get(key) != value}
