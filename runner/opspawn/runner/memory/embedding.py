"""Embedders turn text into vectors for the memory store, and which one a task uses.

Each embedder names its vector space (`space`): vectors of different embedders are not
comparable, so the store keeps one vector per space and a task only recalls memories
embedded in its own space. Names are valid Weaviate vector names (letters, digits, `_`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from opspawn.api.agenttask import ModelSpec, Provider
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


def space_name(*parts: str) -> str:
    """A vector-space name from its parts: `openai`, `text-embedding-3-small` ->
    `openai_text_embedding_3_small`."""
    joined = "_".join(parts)
    return re.sub(r"[^0-9A-Za-z_]", "_", joined)[:200]


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
    if not embedding_model or provider is Provider.ANTHROPIC:
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
