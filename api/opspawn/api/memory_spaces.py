"""Names of the vector spaces memories are embedded in, without importing any embedder.

Vectors of different embedders are not comparable, so a memory collection keeps one named
vector per embedder. The runner embeds in a space; the operator, which creates collections
and their vectors (runners may not change schemas), must name the same space for the same
task: both use `embedding_space`. Names are valid Weaviate vector names (letters, digits, `_`).
"""

from __future__ import annotations

import re

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIMENSIONS = 256
PROVIDERS_WITHOUT_EMBEDDINGS = frozenset({"anthropic"})
"""Providers whose API has no embeddings: their tasks use the offline WordLlama embedder."""


def space_name(*parts: str) -> str:
    """A vector-space name from its parts: `openai`, `text-embedding-3-small` ->
    `openai_text_embedding_3_small`."""
    joined = "_".join(parts)
    return re.sub(r"[^0-9A-Za-z_]", "_", joined)[:200]


WORDLLAMA_SPACE = space_name("wordllama", WORDLLAMA_CONFIG, str(WORDLLAMA_DIMENSIONS))


def uses_provider_embeddings(provider: str, embedding_model: str | None) -> bool:
    """Whether a task of `provider` embeds with the provider's `embedding_model` (else with
    WordLlama)."""
    return bool(embedding_model) and provider not in PROVIDERS_WITHOUT_EMBEDDINGS


def embedding_space(provider: str, embedding_model: str | None) -> str:
    """The space a task of `provider` embeds in, given the operator's embedding model for that
    provider (OPSPAWN_EMBEDDING_MODEL; None: the offline embedder)."""
    if embedding_model and uses_provider_embeddings(provider, embedding_model):
        return space_name(provider, embedding_model)
    return WORDLLAMA_SPACE
