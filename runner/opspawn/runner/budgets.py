"""The budgets of a run (spec.limits): which one, if any, forbids another model turn.

A budget is checked before every model call and right after a turn that asks for tools: when
no further model call is possible, the tools are not run either (their results would never be
seen). Steps count model turns, repair turns included; tokens are input plus output tokens of
every call; cost needs a known price for the model (an unknown price is never guessed: the cost
budget is then not enforced and the runner says so in a `log` event).
"""

from __future__ import annotations

from dataclasses import dataclass

from opspawn.api.agenttask import LimitsSpec
from opspawn.runner.exits import ExitReason
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.ledger import UsageLedger


@dataclass(frozen=True)
class BudgetStop:
    """A budget that is used up."""

    reason: ExitReason
    message: str


@dataclass(frozen=True)
class Budgets:
    """The limits of one run."""

    max_steps: int
    max_tokens: int | None
    max_cost_usd: float | None
    timeout_seconds: float
    deadline: Deadline
    """When the run must be over: timeout_seconds after the runner started."""

    @classmethod
    def from_limits(cls, limits: LimitsSpec, deadline: Deadline) -> Budgets:
        return cls(
            max_steps=limits.max_steps,
            max_tokens=limits.max_tokens,
            max_cost_usd=limits.max_cost_usd,
            timeout_seconds=limits.timeout_seconds,
            deadline=deadline,
        )

    def timed_out(self) -> BudgetStop:
        return BudgetStop(
            ExitReason.TIMED_OUT,
            f"the run took longer than limits.timeoutSeconds ({self.timeout_seconds:g}s)",
        )

    def cost_unenforceable(self, ledger: UsageLedger) -> bool:
        """maxCostUSD is set but the model's price is unknown."""
        return self.max_cost_usd is not None and ledger.cost_usd is None

    def exhausted(self, steps: int, ledger: UsageLedger) -> BudgetStop | None:
        """The budget that forbids another model call after `steps` turns, if any."""
        if self.deadline.expired:
            return self.timed_out()
        if steps >= self.max_steps:
            return BudgetStop(
                ExitReason.MAX_STEPS_REACHED,
                f"{steps} model turns taken, the limit (limits.maxSteps) is {self.max_steps}",
            )
        used = ledger.total.total_tokens
        if self.max_tokens is not None and used >= self.max_tokens:
            return BudgetStop(
                ExitReason.TOKEN_BUDGET_EXCEEDED,
                f"{used} tokens used, the budget (limits.maxTokens) is {self.max_tokens}",
            )
        spent = ledger.cost_usd
        if self.max_cost_usd is not None and spent is not None and spent >= self.max_cost_usd:
            return BudgetStop(
                ExitReason.COST_BUDGET_EXCEEDED,
                f"{spent:.6f} USD spent, the budget (limits.maxCostUSD) is {self.max_cost_usd:g}",
            )
        return None
