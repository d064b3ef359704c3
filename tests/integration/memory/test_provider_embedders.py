"""The providers' embedders through their real SDKs (openai, google-genai) against the fake
model server's embeddings endpoints: vectors in order, ranking by meaning, the key sent only as
the provider's credential, and failures as EmbeddingError without the key."""

from __future__ import annotations

import math

import pytest

from opspawn.dev.ports import free_port
from opspawn.fakes import FakeModelServer
from opspawn.runner.memory.embedding import Embedder, EmbeddingError
from opspawn.runner.memory.provider_embedders import GoogleEmbedder, OpenAIEmbedder
from tests.integration.conftest import Serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

API_KEY = "sk-embedding-test-secret-41c7"
TEXTS = [
    "when is the staging cluster upgraded",
    "the staging cluster is upgraded every tuesday",
    "bananas are rich in potassium",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _embedder(provider: str, base_url: str) -> Embedder:
    if provider == "google":
        return GoogleEmbedder(model="gemini-embedding-001", api_key=API_KEY, base_url=base_url)
    return OpenAIEmbedder(
        provider="openai", model="text-embedding-3-small", api_key=API_KEY, base_url=base_url
    )


def _base_url(server: FakeModelServer, provider: str) -> str:
    return server.google_base_url if provider == "google" else server.openai_base_url


@pytest.mark.parametrize("provider", ["openai", "google"])
async def test_provider_embeddings_rank_by_meaning(provider: str, serve: Serve) -> None:
    server = await serve({"turns": [{"text": "unused"}]})
    embedder = _embedder(provider, _base_url(server, provider))
    try:
        query, related, unrelated = await embedder.embed(TEXTS)
    finally:
        await embedder.aclose()

    assert _cosine(query, related) > _cosine(query, unrelated)
    (request,) = server.requests
    credential = request.headers.get("Authorization") or request.headers.get("x-goog-api-key")
    assert credential is not None and API_KEY in credential
    assert API_KEY not in str(request.body)
    assert embedder.space in ("openai_text_embedding_3_small", "google_gemini_embedding_001")


@pytest.mark.parametrize("provider", ["openai", "google"])
async def test_an_unreachable_provider_is_an_embedding_error(provider: str) -> None:
    embedder = _embedder(
        provider, f"http://127.0.0.1:{free_port()}" + ("/v1" if provider == "openai" else "")
    )
    try:
        with pytest.raises(EmbeddingError) as caught:
            await embedder.embed(TEXTS[:1])
    finally:
        await embedder.aclose()
    assert API_KEY not in str(caught.value)
