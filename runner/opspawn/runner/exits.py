"""Why a run ended, and the exit code each reason maps to.

Every way the runner ends has an `ExitReason`: a CamelCase word the operator can show (it is
the `reason` of the `finished` event and starts the termination message's `message`). Each
reason maps to one of the documented `RunnerExitCode`s, which decides whether the operator
retries the attempt:

======================  ====  ================  =========================================
reason                  code  exit code name    when
======================  ====  ================  =========================================
Completed               0     SUCCEEDED         the model gave its final answer (valid)
Stalled                 1     FAILED            the same tool call, maxRepeatedToolCalls
                                                times in a row
OutputInvalid           1     FAILED            the answer never matched outputSchema
ModelRefused            1     FAILED            the provider withheld the answer
ModelError              1     FAILED            the provider refused the request for good
InvalidInput            2     INVALID_INPUT     environment, spec or tool set unusable
ModelAuthFailed         2     INVALID_INPUT     the provider refused the API key
MaxStepsReached         3     BUDGET_EXHAUSTED  limits.maxSteps model turns were taken
TokenBudgetExceeded     3     BUDGET_EXHAUSTED  limits.maxTokens were used
CostBudgetExceeded      3     BUDGET_EXHAUSTED  limits.maxCostUSD was spent
TimedOut                4     TIMED_OUT         limits.timeoutSeconds passed
InternalError           70    INTERNAL_ERROR    a bug in the runner
ModelUnavailable        75    TRANSIENT         the provider kept failing through retries
ToolServerUnavailable   75    TRANSIENT         an MCP server could not be reached
EventsUndelivered       75    TRANSIENT         JetStream did not acknowledge the events
MemoryUnavailable       75    TRANSIENT         long-term memory is required
                                                (spec.memory.longTerm.required) and the
                                                store or its embedder is unavailable
Terminated              143   TERMINATED        SIGTERM (Pod deleted, evicted, preempted)
======================  ====  ================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opspawn.api.events import RunnerExitCode


class ExitReason(StrEnum):
    """Why a run ended (see the module docstring for the table)."""

    COMPLETED = "Completed"
    STALLED = "Stalled"
    OUTPUT_INVALID = "OutputInvalid"
    MODEL_REFUSED = "ModelRefused"
    MODEL_ERROR = "ModelError"
    INVALID_INPUT = "InvalidInput"
    MODEL_AUTH_FAILED = "ModelAuthFailed"
    MAX_STEPS_REACHED = "MaxStepsReached"
    TOKEN_BUDGET_EXCEEDED = "TokenBudgetExceeded"  # noqa: S105 (a reason, not a secret)
    COST_BUDGET_EXCEEDED = "CostBudgetExceeded"
    TIMED_OUT = "TimedOut"
    INTERNAL_ERROR = "InternalError"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    TOOL_SERVER_UNAVAILABLE = "ToolServerUnavailable"
    EVENTS_UNDELIVERED = "EventsUndelivered"
    MEMORY_UNAVAILABLE = "MemoryUnavailable"
    TERMINATED = "Terminated"

    @property
    def exit_code(self) -> RunnerExitCode:
        """The process exit code this reason ends the runner with."""
        return _EXIT_CODES[self]


_EXIT_CODES: dict[ExitReason, RunnerExitCode] = {
    ExitReason.COMPLETED: RunnerExitCode.SUCCEEDED,
    ExitReason.STALLED: RunnerExitCode.FAILED,
    ExitReason.OUTPUT_INVALID: RunnerExitCode.FAILED,
    ExitReason.MODEL_REFUSED: RunnerExitCode.FAILED,
    ExitReason.MODEL_ERROR: RunnerExitCode.FAILED,
    ExitReason.INVALID_INPUT: RunnerExitCode.INVALID_INPUT,
    ExitReason.MODEL_AUTH_FAILED: RunnerExitCode.INVALID_INPUT,
    ExitReason.MAX_STEPS_REACHED: RunnerExitCode.BUDGET_EXHAUSTED,
    ExitReason.TOKEN_BUDGET_EXCEEDED: RunnerExitCode.BUDGET_EXHAUSTED,
    ExitReason.COST_BUDGET_EXCEEDED: RunnerExitCode.BUDGET_EXHAUSTED,
    ExitReason.TIMED_OUT: RunnerExitCode.TIMED_OUT,
    ExitReason.INTERNAL_ERROR: RunnerExitCode.INTERNAL_ERROR,
    ExitReason.MODEL_UNAVAILABLE: RunnerExitCode.TRANSIENT,
    ExitReason.TOOL_SERVER_UNAVAILABLE: RunnerExitCode.TRANSIENT,
    ExitReason.EVENTS_UNDELIVERED: RunnerExitCode.TRANSIENT,
    ExitReason.MEMORY_UNAVAILABLE: RunnerExitCode.TRANSIENT,
    ExitReason.TERMINATED: RunnerExitCode.TERMINATED,
}


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended."""

    reason: ExitReason
    message: str = ""
    """What happened, for humans (empty when the run completed); never holds a secret."""
    steps: int = 0
    """Model turns taken."""
    result: str | None = None
    """The final answer, when the run completed (JSON text when outputSchema is set)."""
    structured: Any = None
    """The final answer parsed as JSON, when outputSchema is set."""

    @property
    def exit_code(self) -> RunnerExitCode:
        return self.reason.exit_code
