"""Where Weaviate listens, as the operator (which provisions long-term memory) and the runner
(which reads and writes it) both parse it: one parser, so both sides agree on the address."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

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
