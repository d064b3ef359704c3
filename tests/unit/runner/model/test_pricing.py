from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from opspawn.runner.model import ModelPrice, PriceTable, TokenUsage, UsageLedger

USAGE = TokenUsage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000)


def test_cost_prices_cached_and_uncached_input_and_output() -> None:
    price = ModelPrice(input=2.0, cached_input=0.5, output=8.0)
    assert price.cost(USAGE) == pytest.approx(600_000 * 2.0 / 1e6 + 400_000 * 0.5 / 1e6 + 0.8)


def test_cached_input_defaults_to_the_input_price() -> None:
    assert ModelPrice(input=2.0, output=8.0).cost(USAGE) == pytest.approx(2.0 + 0.8)


def test_builtin_table_knows_well_known_models_of_each_provider() -> None:
    table = PriceTable.builtin()
    for provider, model in [
        ("openai", "gpt-4.1-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("google", "gemini-2.5-flash"),
    ]:
        assert table.price(provider, model) is not None
        assert table.cost(provider, model, USAGE) is not None


def test_unknown_models_have_no_cost_rather_than_a_guess() -> None:
    table = PriceTable.builtin()
    assert table.cost("openai", "gpt-4.1-mini-2025-04-14", USAGE) is None
    assert table.cost("anthropic", "gpt-4.1-mini", USAGE) is None
    assert table.cost("openai-compatible", "llama3", USAGE) is None


def test_overrides_from_a_mapping_replace_and_extend_the_builtin_table() -> None:
    table = PriceTable.configured(
        {
            "openai": {"gpt-4.1-mini": {"input": 1.0, "output": 1.0}},
            "openai-compatible": {"llama3": {"input": 0.0, "output": 0.0}},
        }
    )
    assert table.price("openai", "gpt-4.1-mini") == ModelPrice(input=1.0, output=1.0)
    assert table.cost("openai-compatible", "llama3", USAGE) == 0.0
    assert table.price("google", "gemini-2.5-flash") == PriceTable.builtin().price(
        "google", "gemini-2.5-flash"
    )


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_overrides_from_a_file(tmp_path: Path, suffix: str) -> None:
    data = {"anthropic": {"claude-x": {"input": 3, "cached_input": 0.3, "output": 15}}}
    path = tmp_path / f"prices{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    table = PriceTable.configured(path)
    assert table.price("anthropic", "claude-x") == ModelPrice(input=3, cached_input=0.3, output=15)


def test_invalid_price_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="mapping of models"):
        PriceTable.from_mapping({"openai": ["gpt-4o"]})
    with pytest.raises(ValidationError):
        PriceTable.from_mapping({"openai": {"gpt-4o": {"input": -1, "output": 1}}})
    with pytest.raises(ValidationError):
        PriceTable.from_mapping({"openai": {"gpt-4o": {"input": 1, "output": 1, "typo": 2}}})


def test_ledger_adds_up_usage_and_cost() -> None:
    table = PriceTable.from_mapping({"openai": {"m": {"input": 1.0, "output": 2.0}}})
    ledger = UsageLedger(table, provider="openai", model="m")
    first = ledger.record(TokenUsage(input_tokens=1000, output_tokens=100))
    ledger.record(TokenUsage(input_tokens=2000, output_tokens=200))
    assert first.cost_usd == pytest.approx(0.0012)
    assert ledger.calls == 2
    assert ledger.total == TokenUsage(input_tokens=3000, output_tokens=300)
    assert ledger.cost_usd == pytest.approx(0.0036)


def test_ledger_of_an_unpriced_model_has_unknown_cost() -> None:
    ledger = UsageLedger(PriceTable.builtin(), provider="openai", model="no-such-model")
    assert ledger.record(TokenUsage(input_tokens=10)).cost_usd is None
    assert ledger.cost_usd is None
    assert ledger.total.input_tokens == 10
