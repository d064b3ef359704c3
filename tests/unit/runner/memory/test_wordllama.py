"""The offline embedder: loads from the wheel without any download and ranks by meaning."""

from __future__ import annotations

import math

import pytest

from opspawn.api.memory_spaces import WORDLLAMA_DIMENSIONS
from opspawn.runner.memory.wordllama_embedder import WordLlamaEmbedder

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def test_a_related_sentence_ranks_above_an_unrelated_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = WordLlamaEmbedder()
    query, related, unrelated = await embedder.embed(
        [
            "When is the staging cluster upgraded?",
            "The staging Kubernetes cluster gets its upgrades every Tuesday.",
            "Bananas are a good source of potassium.",
        ]
    )
    await embedder.aclose()

    assert len(query) == WORDLLAMA_DIMENSIONS
    assert math.isclose(_cosine(query, query), 1.0, rel_tol=1e-4)
    assert _cosine(query, related) > _cosine(query, unrelated) + 0.2
    assert embedder.space == "wordllama_l2_supercat_256"
