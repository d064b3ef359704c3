"""The Weaviate memory store against a real Weaviate with RBAC, each namespace with the key
the operator provisioned for it: namespaces are tenants that never see each other, expired
memories are never recalled and get deleted (an injected clock instead of waiting), similarity
and topK bound what is recalled, embedders do not mix, and tasks of several namespaces and
embedders may be provisioned at the same time. (The attacks on other namespaces' memories
are in tests/security/test_memory_isolation.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from opspawn.api.events import EventPayload, MemoryPayload, TaskRef
from opspawn.api.weaviate_address import WeaviateAddress
from opspawn.runner.memory.embedding import Embedder
from opspawn.runner.memory.longterm import LongTermMemory, RecallSettings
from opspawn.runner.memory.weaviate_store import WeaviateMemoryStore
from opspawn.runner.memory.wordllama_embedder import WordLlamaEmbedder
from tests.integration.memory.conftest import Provision

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STAGING = "The staging cluster is upgraded every Tuesday at 10:00 UTC."
ONCALL = "The on-call rotation for the payments team changes on Mondays."
QUESTION = "When does the staging cluster get upgraded?"


class Events:
    def __init__(self) -> None:
        self.payloads: list[EventPayload] = []

    async def emit(self, payload: EventPayload, /) -> object:
        self.payloads.append(payload)
        return None

    def memory(self, operation: str) -> list[MemoryPayload]:
        return [
            p for p in self.payloads if isinstance(p, MemoryPayload) and p.operation == operation
        ]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FixedVectors:
    """An embedder of another vector space: every text gets the same 8-dimensional vector."""

    space = "fixed_8"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0] for _ in texts]

    async def aclose(self) -> None:
        return None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


Open = Callable[..., Awaitable[LongTermMemory]]


@pytest.fixture
async def open_memory(
    weaviate_address: WeaviateAddress,
    collection: str,
    embedder: WordLlamaEmbedder,
    provision: Provision,
) -> AsyncIterator[Open]:
    """Open long-term memory for a task as its runner would, with its namespace's key (the
    operator provisions it first); every store is closed at the end."""
    stores: list[WeaviateMemoryStore] = []

    async def open_(
        namespace: str,
        *,
        events: Events | None = None,
        clock: Clock | None = None,
        ttl: timedelta | None = None,
        top_k: int = 5,
        min_similarity: float = 0.3,
        using: Embedder = embedder,
    ) -> LongTermMemory:
        key = await provision(namespace, using.space)
        store = await WeaviateMemoryStore.connect(weaviate_address, key, collection, using.space)
        stores.append(store)
        return LongTermMemory(
            store,
            using,
            task=TaskRef(
                namespace=namespace,
                task_name=f"task-{len(stores)}",
                task_uid=f"uid-{len(stores)}",
                attempt=1,
            ),
            settings=RecallSettings(top_k=top_k, min_similarity=min_similarity, ttl=ttl),
            events=events or Events(),
            clock=clock or Clock(T0),
        )

    yield open_
    for store in stores:
        await store.close()


async def test_a_memory_is_recalled_in_its_namespace_only(open_memory: Open) -> None:
    writer = await open_memory("team-a")
    await writer.remember(STAGING)

    (found,) = await (await open_memory("team-a")).recall(QUESTION)
    assert found.memory.text == STAGING
    assert (found.memory.namespace, found.memory.task_uid, found.memory.task_name) == (
        "team-a",
        "uid-1",
        "task-1",
    )
    assert found.memory.created_at == T0 and found.memory.expires_at is None
    assert 0.3 <= found.similarity <= 1.0
    assert await (await open_memory("team-b")).recall(QUESTION) == []


async def test_expired_memories_are_never_recalled_and_are_deleted(open_memory: Open) -> None:
    clock, events = Clock(T0), Events()
    memory = await open_memory("team-a", clock=clock, events=events, ttl=timedelta(seconds=60))
    written = await memory.remember(STAGING)
    assert written.expires_at == T0 + timedelta(seconds=60)
    lasting = await open_memory("team-a", clock=clock)
    await lasting.remember(STAGING.replace("Tuesday", "Thursday"))

    clock.now = T0 + timedelta(seconds=59)
    assert len(await memory.recall(QUESTION)) == 2
    assert await memory.delete_expired() == 0

    clock.now = T0 + timedelta(seconds=60)
    (still,) = await memory.recall(QUESTION)
    assert "Thursday" in still.memory.text
    assert await memory.delete_expired() == 1
    (expired,) = events.memory("expire")
    assert expired.count == 1

    clock.now = T0  # deleted for good: not even an earlier clock finds it again
    (left,) = await memory.recall(QUESTION)
    assert "Thursday" in left.memory.text


async def test_min_similarity_and_top_k_bound_what_is_recalled(open_memory: Open) -> None:
    events = Events()
    memory = await open_memory("team-a", events=events, top_k=1, min_similarity=0.3)
    for text in (STAGING, ONCALL, "Staging upgrades happen on Tuesdays."):
        await memory.remember(text)

    (best,) = await memory.recall(QUESTION)
    assert "staging" in best.memory.text.lower()
    assert len(await memory.recall(QUESTION, limit=5)) == 2  # the on-call fact is too far
    recalls = events.memory("recall")
    assert [r.count for r in recalls] == [1, 2]
    assert [r.count for r in events.memory("remember")] == [1, 1, 1]
    assert "staging" in recalls[0].detail.lower()


async def test_embedders_share_a_collection_without_mixing(open_memory: Open) -> None:
    words = await open_memory("team-a")
    await words.remember(STAGING)
    fixed = await open_memory("team-a", using=FixedVectors(), min_similarity=0.0)
    assert await fixed.recall(QUESTION) == []  # memories of another vector space are not seen
    await fixed.remember(ONCALL)

    (mine,) = await fixed.recall(QUESTION)
    assert mine.memory.text == ONCALL
    await words.remember("Staging upgrades happen on Tuesdays.")  # the first space still writes
    assert {m.memory.text for m in await words.recall(QUESTION)} == {
        STAGING,
        "Staging upgrades happen on Tuesdays.",
    }


async def test_namespaces_and_embedders_are_provisioned_at_the_same_time(
    open_memory: Open,
) -> None:
    opened = [
        open_memory(namespace, using=using)
        for namespace in ("team-a", "team-b", "team-c")
        for using in (FixedVectors(), FixedVectors())
    ]
    memories = await asyncio.gather(*opened)
    await asyncio.gather(*(m.remember(f"{ONCALL} ({i})") for i, m in enumerate(memories)))
    assert len(await memories[0].recall(QUESTION)) == 2  # team-a's two, no other namespace's
