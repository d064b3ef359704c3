"""The runner's memory configuration: where Weaviate listens, the namespace's key, which
embedding model to use.

Kept apart from the store and the embedders, so reading the configuration imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

DEFAULT_GRPC_PORT = 50051
MAX_API_KEY_CHARS = 512
"""Longer than any key Weaviate issues; a longer value is refused unsent."""


class GrpcAddressError(ValueError):
    """The gRPC address (not the URL) is malformed."""


@dataclass(frozen=True)
class WeaviateAddress:
    """Weaviate's REST endpoint and its gRPC endpoint (weaviate-client v4 uses both)."""

    http_host: str
    http_port: int
    secure: bool
    grpc_host: str
    grpc_port: int

    @classmethod
    def parse(cls, url: str, grpc_address: str | None = None) -> WeaviateAddress:
        """From `http(s)://host[:port]` and an optional `host:port` for gRPC (default: the
        same host, port 50051). gRPC uses TLS when the URL is https. ValueError when either
        is malformed (the message never repeats the value)."""
        parts = urlsplit(url)
        try:
            http_port = parts.port
        except ValueError:
            raise ValueError("the URL has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        secure = parts.scheme == "https"
        grpc_host, grpc_port = parts.hostname, DEFAULT_GRPC_PORT
        if grpc_address:
            host, separator, port = grpc_address.rpartition(":")
            if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise GrpcAddressError("must be host:port")
            grpc_host, grpc_port = host.strip("[]"), int(port)
        return cls(
            http_host=parts.hostname,
            http_port=http_port or (443 if secure else 80),
            secure=secure,
            grpc_host=grpc_host,
            grpc_port=grpc_port,
        )


@dataclass(frozen=True)
class MemoryEndpoint:
    """Where long-term memory is kept (OPSPAWN_WEAVIATE_URL, OPSPAWN_WEAVIATE_GRPC_ADDRESS),
    the API key of the task's namespace there (OPSPAWN_WEAVIATE_API_KEY, from the namespace's
    Secret the operator provisions) and the provider's embedding model
    (OPSPAWN_EMBEDDING_MODEL; None: the offline WordLlama embedder)."""

    weaviate: WeaviateAddress | None = None
    api_key: SecretStr | None = None
    embedding_model: str | None = None
