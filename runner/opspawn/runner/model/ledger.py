"""The running total of tokens and cost over the model calls of one run."""

from __future__ import annotations

from dataclasses import dataclass

from opspawn.runner.model.pricing import PriceTable
from opspawn.runner.model.types import TokenUsage


@dataclass(frozen=True)
class LedgerEntry:
    """One model call as recorded in the ledger."""

    usage: TokenUsage
    cost_usd: float | None
    """Cost of this call; None when the model's price is unknown."""


class UsageLedger:
    """Adds up the usage of every call of one model and prices it.

    The price is looked up under the provider and the model name of the task spec (not the
    snapshot name a provider reports back), so a configured price applies to every call.
    """

    def __init__(self, prices: PriceTable, *, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self._price = prices.price(provider, model)
        self._entries: list[LedgerEntry] = []
        self._total = TokenUsage()

    def record(self, usage: TokenUsage) -> LedgerEntry:
        """Add one call's usage; returns it with its cost."""
        entry = LedgerEntry(usage, None if self._price is None else self._price.cost(usage))
        self._entries.append(entry)
        self._total = self._total + usage
        return entry

    @property
    def calls(self) -> int:
        return len(self._entries)

    @property
    def total(self) -> TokenUsage:
        return self._total

    @property
    def cost_usd(self) -> float | None:
        """Cost of all calls so far; None when the model's price is unknown."""
        if self._price is None:
            return None
        return sum((entry.cost_usd or 0.0) for entry in self._entries)
