"""The runner's memory configuration: where Weaviate listens, the namespace's key, which
embedding model to use.

Kept apart from the store and the embedders, so reading the configuration imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from opspawn.api.weaviate_address import WeaviateAddress


@dataclass(frozen=True)
class MemoryEndpoint:
    """Where long-term memory is kept (OPSPAWN_WEAVIATE_URL, OPSPAWN_WEAVIATE_GRPC_ADDRESS),
    the API key of the task's namespace there (OPSPAWN_WEAVIATE_API_KEY, from the namespace's
    Secret the operator provisions) and the provider's embedding model
    (OPSPAWN_EMBEDDING_MODEL; None: the offline WordLlama embedder)."""

    weaviate: WeaviateAddress | None = None
    api_key: SecretStr | None = None
    embedding_model: str | None = None
