"""Normalising the three providers' usage reports into `TokenUsage`.

The providers count differently:

- OpenAI: `prompt_tokens` includes cached tokens, `completion_tokens` includes reasoning.
- Anthropic: `input_tokens` excludes cache reads and cache writes, which come separately;
  `output_tokens` includes thinking.
- Google: `prompt_token_count` includes cached tokens but not tool-use prompt tokens;
  `candidates_token_count` excludes thoughts, which come as `thoughts_token_count`.

`TokenUsage` always counts all prompt tokens as input and all generated tokens as output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opspawn.runner.model.types import TokenUsage

if TYPE_CHECKING:  # each SDK is imported by its own adapter, only when that provider is used
    from anthropic.types import Usage as AnthropicUsage
    from google.genai.types import GenerateContentResponseUsageMetadata
    from openai.types import CompletionUsage


def from_openai(usage: CompletionUsage | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return TokenUsage(
        input_tokens=usage.prompt_tokens,
        cached_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        output_tokens=usage.completion_tokens,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def from_anthropic(usage: AnthropicUsage) -> TokenUsage:
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    details = usage.output_tokens_details
    return TokenUsage(
        input_tokens=usage.input_tokens + cache_read + cache_write,
        cached_tokens=cache_read,
        output_tokens=usage.output_tokens,
        reasoning_tokens=details.thinking_tokens if details else 0,
    )


def from_google(usage: GenerateContentResponseUsageMetadata | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    thoughts = usage.thoughts_token_count or 0
    return TokenUsage(
        input_tokens=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        cached_tokens=usage.cached_content_token_count or 0,
        output_tokens=(usage.candidates_token_count or 0) + thoughts,
        reasoning_tokens=thoughts,
    )
