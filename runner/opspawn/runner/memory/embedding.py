"""Embedders turn text into vectors for the memory store, and which one a task uses.

Each embedder names its vector space (`space`, see `spaces`): vectors of different embedders
are not comparable, so the store keeps one vector per space and a task only recalls memories
embedded in its own space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from opspawn.api.agenttask import ModelSpec, Provider
from opspawn.api.memory_spaces import uses_provider_embeddings
from opspawn.runner.model.factory import KEYLESS_PLACEHOLDER


class EmbeddingError(Exception):
    """The embedder could not embed the text (the provider refused or could not be reached)."""


class Embedder(Protocol):
    @property
    def space(self) -> str:
        """The vector space's name, e.g. `wordllama_l2_supercat_256`."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def aclose(self) -> None: ...


def build_embedder(
    model: ModelSpec,
    embedding_model: str | None,
    *,
    api_key: str | None,
    base_url: str | None,
) -> Embedder:
    """The embedder of a task: its provider's `embedding_model` when one is configured
    (OPSPAWN_EMBEDDING_MODEL) and the provider has an embeddings API, else WordLlama."""
    from opspawn.runner.memory.wordllama_embedder import WordLlamaEmbedder

    provider = Provider(model.provider)
    if not embedding_model or not uses_provider_embeddings(provider.value, embedding_model):
        return WordLlamaEmbedder()
    from opspawn.runner.memory.provider_embedders import GoogleEmbedder, OpenAIEmbedder

    if provider is Provider.GOOGLE:
        return GoogleEmbedder(model=embedding_model, api_key=api_key or "", base_url=base_url)
    return OpenAIEmbedder(
        provider=provider.value,
        model=embedding_model,
        api_key=api_key or KEYLESS_PLACEHOLDER,
        base_url=base_url or model.base_url,
    )
