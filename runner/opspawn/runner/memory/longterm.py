"""Long-term memory for one task: embed, store and search in the task's namespace, with events.

Every read and write becomes a `memory` event (recall, remember, expire); a failure of the
store or the embedder becomes an `unavailable` memory event and a `MemoryUnavailableError`,
so the caller decides whether the task goes on without memory.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from opspawn.api.events import MemoryPayload, TaskRef
from opspawn.runner.memory.embedding import Embedder, EmbeddingError
from opspawn.runner.memory.store import Memory, MemoryStore, MemoryStoreError, RecalledMemory
from opspawn.runner.sink import EventSink

Clock = Callable[[], datetime]
T = TypeVar("T")

DETAIL_CHARS = 240
"""How much of each memory a `memory` event's detail keeps."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryUnavailableError(Exception):
    """The memory store or the embedder failed; the message says how (never a secret)."""


@dataclass(frozen=True)
class RecallSettings:
    """spec.memory.longTerm's numbers."""

    top_k: int
    min_similarity: float
    ttl: timedelta | None


class LongTermMemory:
    """The task's view of the store: its namespace, its embedder, its TTL and clock."""

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        *,
        task: TaskRef,
        settings: RecallSettings,
        events: EventSink,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._task = task
        self._settings = settings
        self._events = events
        self._clock = clock

    async def remember(self, text: str) -> Memory:
        """Store `text` with this task's provenance (and its TTL)."""
        now = self._clock()
        ttl = self._settings.ttl
        memory = Memory(
            text=text,
            namespace=self._task.namespace,
            task_uid=self._task.task_uid,
            task_name=self._task.task_name,
            created_at=now,
            expires_at=now + ttl if ttl is not None else None,
        )
        await self._unless_failing(self._add(memory))
        await self._events.emit(MemoryPayload(operation="remember", count=1, detail=_excerpt(text)))
        return memory

    async def _add(self, memory: Memory) -> None:
        (vector,) = await self._embedder.embed([memory.text])
        await self._store.add(memory, vector)

    async def recall(self, query: str, limit: int | None = None) -> list[RecalledMemory]:
        """The unexpired memories of the namespace most similar to `query` (at most `limit`,
        default topK; none below minSimilarity)."""
        found = await self._unless_failing(self._search(query, limit or self._settings.top_k))
        lines = [f"[{item.similarity:.2f}] {_excerpt(item.memory.text)}" for item in found]
        await self._events.emit(
            MemoryPayload(operation="recall", count=len(found), detail="\n".join(lines))
        )
        return found

    async def _search(self, query: str, limit: int) -> list[RecalledMemory]:
        (vector,) = await self._embedder.embed([query])
        return await self._store.search(
            self._task.namespace,
            vector,
            limit=limit,
            min_similarity=self._settings.min_similarity,
            now=self._clock(),
        )

    async def delete_expired(self) -> int:
        """Delete the namespace's expired memories; how many (an `expire` event when any)."""
        deleted = await self._unless_failing(
            self._store.delete_expired(self._task.namespace, self._clock())
        )
        if deleted:
            await self._events.emit(
                MemoryPayload(operation="expire", count=deleted, detail="expired memories deleted")
            )
        return deleted

    async def _unless_failing(self, work: Coroutine[Any, Any, T]) -> T:
        """Await `work`; a store or embedder failure is reported and re-raised as
        MemoryUnavailableError."""
        try:
            return await work
        except (MemoryStoreError, EmbeddingError) as error:
            await report_unavailable(self._events, str(error))
            raise MemoryUnavailableError(str(error)) from None


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 1] + "…"


async def report_unavailable(events: EventSink, reason: str) -> None:
    """The `memory` event that says the task goes on (or stops) without long-term memory."""
    await events.emit(MemoryPayload(operation="unavailable", detail=reason))
