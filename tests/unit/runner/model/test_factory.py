from __future__ import annotations

from typing import Any

import pytest

from opspawn.api.agenttask import ModelSpec
from opspawn.runner.model import build_model_client
from opspawn.runner.model.anthropic import AnthropicClient
from opspawn.runner.model.google import GoogleClient
from opspawn.runner.model.openai import OpenAIChatClient
from opspawn.runner.model.react import ReActClient

pytestmark = pytest.mark.anyio

KEY_REF = {"name": "model-key", "key": "api-key"}


def spec(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate(fields)


@pytest.mark.parametrize(
    ("provider", "kind"),
    [("openai", OpenAIChatClient), ("anthropic", AnthropicClient), ("google", GoogleClient)],
)
async def test_each_provider_gets_its_client(provider: str, kind: type) -> None:
    client = build_model_client(
        spec(provider=provider, name="m", apiKeySecretRef=KEY_REF), api_key="sk-test-not-a-real-key"
    )
    try:
        assert isinstance(client, kind)
        assert (client.provider, client.model) == (provider, "m")
    finally:
        await client.aclose()


async def test_openai_compatible_uses_native_tools_or_react() -> None:
    base = {"provider": "openai-compatible", "name": "llama3", "baseURL": "http://127.0.0.1:9/v1"}
    native = build_model_client(spec(**base), api_key=None)
    react = build_model_client(spec(**base, toolCalling="react"), api_key=None)
    try:
        assert isinstance(native, OpenAIChatClient)
        assert isinstance(react, ReActClient)
        assert react.provider == "openai-compatible"
    finally:
        await native.aclose()
        await react.aclose()


def test_hosted_providers_need_a_key() -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        build_model_client(
            spec(provider="anthropic", name="m", apiKeySecretRef=KEY_REF), api_key=""
        )


def test_react_is_refused_for_hosted_providers() -> None:
    model = spec(provider="openai", name="m", apiKeySecretRef=KEY_REF, toolCalling="react")
    with pytest.raises(ValueError, match="only available for provider openai-compatible"):
        build_model_client(model, api_key="k")
