"""Every stop reason maps to one of the documented exit codes."""

from __future__ import annotations

import pytest

from opspawn.api.events import RunnerExitCode
from opspawn.runner.exits import ExitReason


@pytest.mark.parametrize("reason", list(ExitReason))
def test_every_reason_has_a_documented_exit_code(reason: ExitReason) -> None:
    assert isinstance(reason.exit_code, RunnerExitCode)
    assert reason.value[0].isupper() and reason.value.isalpha()


def test_only_infrastructure_failures_are_retried() -> None:
    retried = {reason for reason in ExitReason if reason.exit_code.retryable}
    assert retried == {
        ExitReason.MODEL_UNAVAILABLE,
        ExitReason.TOOL_SERVER_UNAVAILABLE,
        ExitReason.EVENTS_UNDELIVERED,
        ExitReason.MEMORY_UNAVAILABLE,
        ExitReason.TERMINATED,
    }


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (ExitReason.COMPLETED, 0),
        (ExitReason.STALLED, 1),
        (ExitReason.OUTPUT_INVALID, 1),
        (ExitReason.INVALID_INPUT, 2),
        (ExitReason.MAX_STEPS_REACHED, 3),
        (ExitReason.TOKEN_BUDGET_EXCEEDED, 3),
        (ExitReason.COST_BUDGET_EXCEEDED, 3),
        (ExitReason.TIMED_OUT, 4),
        (ExitReason.INTERNAL_ERROR, 70),
        (ExitReason.TERMINATED, 143),
    ],
)
def test_exit_codes(reason: ExitReason, code: int) -> None:
    assert int(reason.exit_code) == code
