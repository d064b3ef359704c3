"""Long-term memory for the length of one attempt: open it, recall for the goal, close it.

With spec.memory.longTerm.enabled the runner connects to the store (OPSPAWN_WEAVIATE_URL)
with its namespace's key (OPSPAWN_WEAVIATE_API_KEY), deletes the namespace's expired
memories, and recalls the topK memories most similar to the goal, which the model gets with
the goal. The `remember` and `recall` tools, when the task
allows them, use the same memory.

When the store or the embedder is unavailable (or none is configured) a `memory` event with
operation `unavailable` and a warning say so, and the task goes on without long-term memory
(the tools answer with an error), unless spec.memory.longTerm.required is true: then opening
raises `MemoryRequiredError` and the attempt ends with reason MemoryUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from opspawn.api.agenttask import AgentTaskSpec, BuiltinTool, BuiltinToolName
from opspawn.api.events import LogPayload, TaskRef
from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.runner.memory.embedding import Embedder, EmbeddingError, build_embedder
from opspawn.runner.memory.endpoint import MemoryEndpoint
from opspawn.runner.memory.longterm import (
    Clock,
    LongTermMemory,
    MemoryUnavailableError,
    RecallSettings,
    report_unavailable,
    utc_now,
)
from opspawn.runner.memory.store import MemoryStoreError, RecalledMemory
from opspawn.runner.memory.tools import Unavailable, describe, memory_tool_factories
from opspawn.runner.sink import EventSink
from opspawn.runner.tools.base import Tool
from opspawn.runner.tools.builtin import BuiltinToolFactory
from opspawn.runner.tools.registry import ToolConfigError

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "no memory store is configured for the runner (OPSPAWN_WEAVIATE_URL)"
NO_CREDENTIAL = (
    "the runner has no Weaviate key for its namespace (OPSPAWN_WEAVIATE_API_KEY, from the "
    "Secret opspawn-memory): the operator could not provision it; its Events on the task say why"
)


class MemoryRequiredError(Exception):
    """Long-term memory is required by the task and unavailable."""


@dataclass(frozen=True)
class MemorySession:
    """What the attempt gets from long-term memory."""

    recalled: Sequence[RecalledMemory] = ()
    """Memories recalled for the goal at the start, most similar first."""
    tool_factories: Mapping[BuiltinToolName, BuiltinToolFactory] = field(default_factory=dict)
    """Factories of `remember` and `recall` for `build_registry`."""

    @property
    def context(self) -> list[str]:
        """The recalled memories as lines for the goal message."""
        return [describe(item) for item in self.recalled]


@contextlib.asynccontextmanager
async def long_term_memory(
    spec: AgentTaskSpec,
    *,
    task: TaskRef,
    endpoint: MemoryEndpoint,
    api_key: str | None,
    base_url: str | None,
    events: EventSink,
    clock: Clock = utc_now,
) -> AsyncIterator[MemorySession]:
    """The task's long-term memory, open for the body of the `async with`."""
    settings = spec.memory.long_term
    if not settings.enabled or settings.collection is None:
        yield MemorySession(tool_factories=_disabled_factories())
        return
    if endpoint.weaviate is None:
        yield await _without_memory(NOT_CONFIGURED, spec, events, reported=False)
        return
    if endpoint.api_key is None:
        yield await _without_memory(NO_CREDENTIAL, spec, events, reported=False)
        return
    embedder = build_embedder(
        spec.model, endpoint.embedding_model, api_key=api_key, base_url=base_url
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(embedder.aclose)
        try:
            memory = await _open(
                endpoint.weaviate,
                endpoint.api_key.get_secret_value(),
                settings.collection,
                embedder,
                stack,
                task=task,
                spec=spec,
                events=events,
                clock=clock,
            )
            await memory.delete_expired()
            recalled = await memory.recall(spec.goal)
        except (MemoryStoreError, EmbeddingError) as error:  # opening failed: not reported yet
            session = await _without_memory(str(error), spec, events, reported=False)
        except MemoryUnavailableError as error:  # LongTermMemory reported it
            session = await _without_memory(str(error), spec, events, reported=True)
        else:
            session = MemorySession(recalled, memory_tool_factories(memory))
        yield session


async def _open(
    address: WeaviateAddress,
    api_key: str,
    collection: str,
    embedder: Embedder,
    stack: contextlib.AsyncExitStack,
    *,
    task: TaskRef,
    spec: AgentTaskSpec,
    events: EventSink,
    clock: Clock,
) -> LongTermMemory:
    from opspawn.runner.memory.weaviate_store import WeaviateMemoryStore

    store = await WeaviateMemoryStore.connect(address, api_key, collection, embedder.space)
    stack.push_async_callback(store.close)
    settings = spec.memory.long_term
    return LongTermMemory(
        store,
        embedder,
        task=task,
        settings=RecallSettings(
            top_k=settings.top_k,
            min_similarity=settings.min_similarity,
            ttl=timedelta(seconds=settings.ttl_seconds) if settings.ttl_seconds else None,
        ),
        events=events,
        clock=clock,
    )


async def _without_memory(
    reason: str, spec: AgentTaskSpec, events: EventSink, *, reported: bool
) -> MemorySession:
    """Report that long-term memory is unavailable; raise when the task requires it."""
    if not reported:
        await report_unavailable(events, reason)
    if spec.memory.long_term.required:
        raise MemoryRequiredError(
            f"long-term memory is required (spec.memory.longTerm.required) but unavailable: "
            f"{reason}"
        )
    message = f"long-term memory is unavailable, going on without it: {reason}"
    logger.warning("%s", message)
    await events.emit(LogPayload(level="warning", message=message))
    return MemorySession(tool_factories=memory_tool_factories(Unavailable(reason)))


def _disabled_factories() -> dict[BuiltinToolName, BuiltinToolFactory]:
    """Factories that refuse `remember`/`recall` when long-term memory is off."""

    def refuse(entry: BuiltinTool) -> Tool:
        raise ToolConfigError(
            f"built-in tool {entry.name.value!r} needs spec.memory.longTerm.enabled"
        )

    return {BuiltinToolName.REMEMBER: refuse, BuiltinToolName.RECALL: refuse}
