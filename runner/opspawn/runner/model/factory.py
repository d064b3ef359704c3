"""Building the model client a task's `ModelSpec` asks for.

Each adapter is imported only when its provider is asked for: the provider SDKs take most of
the runner's cold start, and a task uses one of them.
"""

from __future__ import annotations

from opspawn.api.agenttask import ModelSpec, Provider, ToolCalling
from opspawn.runner.model.base import ModelClient
from opspawn.runner.model.retry import RetryPolicy
from opspawn.runner.model.settings import Sampling

KEYLESS_PLACEHOLDER = "no-key"
"""Sent as the bearer token to openai-compatible servers configured without a key (the SDK
insists on one; servers such as vLLM and Ollama ignore it)."""


def build_model_client(
    spec: ModelSpec,
    *,
    api_key: str | None,
    base_url: str | None = None,
    retry: RetryPolicy | None = None,
) -> ModelClient:
    """The client for `spec`.

    `api_key` is the value of the spec's `apiKeySecretRef` (required for openai, anthropic and
    google). `base_url` overrides the provider's endpoint (the spec's `baseURL` for
    openai-compatible, the public API otherwise), e.g. to use a mock model server.
    """
    retry = retry or RetryPolicy()
    sampling = Sampling(
        temperature=spec.temperature,
        top_p=spec.top_p,
        max_output_tokens=spec.max_output_tokens,
    )
    provider = Provider(spec.provider)
    if spec.tool_calling is ToolCalling.REACT and provider is not Provider.OPENAI_COMPATIBLE:
        raise ValueError("toolCalling: react is only available for provider openai-compatible")
    if provider is Provider.OPENAI_COMPATIBLE:
        from opspawn.runner.model.openai import OpenAIChat, OpenAIChatClient
        from opspawn.runner.model.react import ReActClient

        endpoint = base_url or spec.base_url
        if not endpoint:
            raise ValueError("provider openai-compatible needs a baseURL")
        chat = OpenAIChat(
            provider=provider.value,
            model=spec.name,
            api_key=api_key or KEYLESS_PLACEHOLDER,
            base_url=endpoint,
            sampling=sampling,
            retry=retry,
        )
        if spec.tool_calling is ToolCalling.REACT:
            return ReActClient(chat)
        return OpenAIChatClient(chat)
    if not api_key:
        raise ValueError(f"provider {provider.value} needs an API key")
    if provider is Provider.OPENAI:
        from opspawn.runner.model.openai import OpenAIChat, OpenAIChatClient

        return OpenAIChatClient(
            OpenAIChat(
                provider=provider.value,
                model=spec.name,
                api_key=api_key,
                base_url=base_url,
                sampling=sampling,
                retry=retry,
            )
        )
    if provider is Provider.ANTHROPIC:
        from opspawn.runner.model.anthropic import AnthropicClient

        return AnthropicClient(
            model=spec.name, api_key=api_key, base_url=base_url, sampling=sampling, retry=retry
        )
    from opspawn.runner.model.google import GoogleClient

    return GoogleClient(
        model=spec.name, api_key=api_key, base_url=base_url, sampling=sampling, retry=retry
    )
