"""Each provider's usage report normalised: input includes cached, output includes reasoning."""

from __future__ import annotations

from anthropic.types import Usage as AnthropicUsage
from google.genai.types import GenerateContentResponseUsageMetadata
from openai.types import CompletionUsage

from opspawn.runner.model import TokenUsage
from opspawn.runner.model.usage import from_anthropic, from_google, from_openai


def test_openai_prompt_tokens_include_cached_and_completion_includes_reasoning() -> None:
    usage = CompletionUsage.model_validate(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "total_tokens": 1300,
            "prompt_tokens_details": {"cached_tokens": 600},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
    )
    assert from_openai(usage) == TokenUsage(
        input_tokens=1000, cached_tokens=600, output_tokens=300, reasoning_tokens=200
    )


def test_openai_without_details_or_usage() -> None:
    bare = CompletionUsage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert from_openai(bare) == TokenUsage(input_tokens=5, output_tokens=2)
    assert from_openai(None) == TokenUsage()


def test_anthropic_input_tokens_exclude_cache_reads_and_writes() -> None:
    usage = AnthropicUsage.model_validate(
        {
            "input_tokens": 100,
            "cache_read_input_tokens": 800,
            "cache_creation_input_tokens": 50,
            "output_tokens": 400,
            "output_tokens_details": {"thinking_tokens": 250},
        }
    )
    assert from_anthropic(usage) == TokenUsage(
        input_tokens=950, cached_tokens=800, output_tokens=400, reasoning_tokens=250
    )


def test_anthropic_without_cache_fields() -> None:
    usage = AnthropicUsage(input_tokens=10, output_tokens=3)
    assert from_anthropic(usage) == TokenUsage(input_tokens=10, output_tokens=3)


def test_google_candidates_exclude_thoughts_and_tool_prompts_are_input() -> None:
    usage = GenerateContentResponseUsageMetadata(
        prompt_token_count=1000,
        cached_content_token_count=400,
        tool_use_prompt_token_count=20,
        candidates_token_count=100,
        thoughts_token_count=300,
        total_token_count=1420,
    )
    assert from_google(usage) == TokenUsage(
        input_tokens=1020, cached_tokens=400, output_tokens=400, reasoning_tokens=300
    )


def test_google_with_missing_counts() -> None:
    assert from_google(GenerateContentResponseUsageMetadata()) == TokenUsage()
    assert from_google(None) == TokenUsage()


def test_usage_adds_up() -> None:
    one = TokenUsage(input_tokens=1, cached_tokens=2, output_tokens=3, reasoning_tokens=4)
    assert one + one == TokenUsage(
        input_tokens=2, cached_tokens=4, output_tokens=6, reasoning_tokens=8
    )
    assert one.total_tokens == 4
