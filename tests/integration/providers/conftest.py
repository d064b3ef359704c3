"""Fixtures of the provider tests: the real SDKs over HTTP against the fake model server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from opspawn.api.agenttask import ModelSpec
from opspawn.fakes import FakeModelServer
from opspawn.runner.model import ModelClient, RetryPolicy, build_model_client

FAKE_KEY = "sk-test-not-a-real-key"
PROVIDERS = ("openai", "anthropic", "google")
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash"}
FAST_RETRY = RetryPolicy(max_attempts=3, call_timeout=10.0, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def fake_key() -> str:
    """The API key every test client uses; it must never appear in an error message."""
    return FAKE_KEY


Connect = Callable[..., ModelClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Build model clients for a fake server; all are closed at the end."""
    clients: list[ModelClient] = []

    def build(
        server: FakeModelServer,
        provider: str,
        *,
        retry: RetryPolicy = FAST_RETRY,
        api_key: str | None = FAKE_KEY,
        **spec: Any,
    ) -> ModelClient:
        base_url = server.openai_base_url if provider.startswith("openai") else server.url
        fields: dict[str, Any] = {"provider": provider, "name": MODELS.get(provider, "local-model")}
        if provider == "openai-compatible":
            fields["baseURL"] = base_url
        else:
            fields["apiKeySecretRef"] = {"name": "model-key", "key": "api-key"}
        client = build_model_client(
            ModelSpec.model_validate({**fields, **spec}),
            api_key=api_key,
            base_url=None if provider == "openai-compatible" else base_url,
            retry=retry,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
