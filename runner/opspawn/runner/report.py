"""The end of an attempt: the `result` (and `result_part`), `error` and `finished` events, the
termination message."""

from __future__ import annotations

from collections.abc import Callable

from opspawn.api.events import (
    ErrorPayload,
    FinishedPayload,
    ResultPayload,
    TerminationMessage,
    result_parts,
)
from opspawn.runner.exits import ExitReason, RunOutcome
from opspawn.runner.sink import EventSink


async def report_outcome(
    events: EventSink, outcome: RunOutcome, *, duration_ms: int, redact: Callable[[str], str]
) -> None:
    """Emit how the attempt ended: its result (if any), why it failed (if it did), finished.

    A result too large for its `result` event (which is then cut) is followed by its
    `result_part` events, which carry the full text.
    """
    if outcome.result is not None:
        await events.emit(ResultPayload.of(outcome.result, outcome.structured))
        for part in result_parts(outcome.result, outcome.structured):
            await events.emit(part)
    if outcome.reason is not ExitReason.COMPLETED:
        await events.emit(
            ErrorPayload(
                reason=outcome.reason.value,
                message=redact(outcome.message),
                retryable=outcome.exit_code.retryable,
            )
        )
    await events.emit(
        FinishedPayload(
            exit_code=int(outcome.exit_code),
            reason=outcome.reason.value,
            steps=outcome.steps,
            duration_ms=duration_ms,
        )
    )


def termination_message(outcome: RunOutcome, redact: Callable[[str], str]) -> TerminationMessage:
    """The bounded summary the kubelet keeps: exit code, result, and `<reason>: <message>`."""
    message = outcome.reason.value
    if outcome.message:
        message = f"{message}: {redact(outcome.message)}"
    return TerminationMessage.build(outcome.exit_code, result=outcome.result, message=message)
