"""Model prices, and the cost of token usage in US dollars.

A price table maps (provider, model name) to prices per million tokens. The built-in table
(`prices.yaml` next to this module) covers a handful of well-known models; configuration
overrides or extends it with the same shape, from a YAML or JSON file or a mapping:

    openai:
      gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}
    openai-compatible:
      meta-llama/llama-3.3-70b-instruct: {input: 0.13, output: 0.40}

Names match exactly (a dated snapshot such as `gpt-4.1-mini-2025-04-14` is a different
entry): a model without an entry has an unknown cost (None), never a guessed one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from opspawn.runner.model.types import TokenUsage

PER_MILLION = 1_000_000


class ModelPrice(BaseModel):
    """Prices of one model in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    """Prompt tokens not served from cache (cache writes included)."""
    output: float = Field(ge=0)
    """Generated tokens, reasoning included."""
    cached_input: float | None = Field(default=None, ge=0)
    """Prompt tokens served from the provider's cache; `input` when not set."""

    def cost(self, usage: TokenUsage) -> float:
        """US dollars for `usage`."""
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        dollars = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_price
            + usage.output_tokens * self.output
        )
        return dollars / PER_MILLION


class PriceTable:
    """Prices by provider and exact model name."""

    def __init__(self, prices: Mapping[tuple[str, str], ModelPrice]) -> None:
        self._prices = dict(prices)

    @classmethod
    def builtin(cls) -> PriceTable:
        """The table shipped with opspawn."""
        data = resources.files("opspawn.runner.model").joinpath("prices.yaml")
        text = data.read_text(encoding="utf-8")
        return cls.from_mapping(yaml.safe_load(text))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PriceTable:
        """A table from `{provider: {model: {input, output, cached_input}}}`."""
        if not isinstance(data, Mapping):
            raise ValueError("a price table must be a mapping of provider to models")
        prices: dict[tuple[str, str], ModelPrice] = {}
        for provider, models in data.items():
            if not isinstance(models, Mapping):
                raise ValueError(f"prices of provider {provider!r} must be a mapping of models")
            for name, price in models.items():
                prices[(str(provider), str(name))] = ModelPrice.model_validate(price)
        return cls(prices)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """A table from a YAML or JSON file (JSON when the name ends in .json)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.from_mapping(data or {})

    @classmethod
    def configured(cls, overrides: str | Path | Mapping[str, Any] | None = None) -> PriceTable:
        """The built-in table with `overrides` (a file path or a mapping) laid over it."""
        table = cls.builtin()
        if overrides is None:
            return table
        if isinstance(overrides, Mapping):
            return table.overridden_by(cls.from_mapping(overrides))
        return table.overridden_by(cls.from_file(overrides))

    def overridden_by(self, other: PriceTable) -> PriceTable:
        """This table with every entry of `other` added or replacing ours."""
        return PriceTable({**self._prices, **other._prices})

    def price(self, provider: str, model: str) -> ModelPrice | None:
        return self._prices.get((provider, model))

    def cost(self, provider: str, model: str, usage: TokenUsage) -> float | None:
        """US dollars for `usage` of `model`, or None when its price is unknown."""
        price = self.price(provider, model)
        return None if price is None else price.cost(usage)
