"""What a long-term memory is, and the interface of the store that keeps memories.

A store holds memories per namespace (each Kubernetes namespace is a tenant of its own: a task
never sees another namespace's memories) in one vector space, the embedder's. It is given the
vectors: embedding is the caller's job (`LongTermMemory`). Expiry is the caller's clock: the
store is told what "now" is, so tests need no sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Memory:
    """One remembered fact with its provenance."""

    text: str
    namespace: str
    """The Kubernetes namespace of the task that wrote it (its tenant)."""
    task_uid: str
    """metadata.uid of the AgentTask that wrote it."""
    task_name: str
    """metadata.name of that AgentTask."""
    created_at: datetime
    """When it was written (aware, UTC)."""
    expires_at: datetime | None = None
    """After this it is never recalled and may be deleted (None: it does not expire)."""

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class RecalledMemory:
    """A memory found by a search, with its cosine similarity to the query (-1 to 1)."""

    id: str
    memory: Memory
    similarity: float


class MemoryStoreError(Exception):
    """The store cannot be reached, or refused the operation; the message says which."""


class MemoryStore(Protocol):
    """Keeps memories per namespace; `WeaviateMemoryStore` is the implementation."""

    async def add(self, memory: Memory, vector: Sequence[float]) -> str:
        """Store `memory` in its namespace; its id."""
        ...

    async def search(
        self,
        namespace: str,
        vector: Sequence[float],
        *,
        limit: int,
        min_similarity: float,
        now: datetime,
    ) -> list[RecalledMemory]:
        """At most `limit` unexpired memories of `namespace` at least `min_similarity` close
        to `vector`, most similar first."""
        ...

    async def delete_expired(self, namespace: str, now: datetime) -> int:
        """Delete the memories of `namespace` that have expired by `now`; how many."""
        ...

    async def close(self) -> None: ...
