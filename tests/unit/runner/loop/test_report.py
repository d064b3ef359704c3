"""The end of an attempt: result, result parts, error and finished, in that order."""

from __future__ import annotations

import hashlib
import json

import pytest

from opspawn.api.events import (
    ErrorPayload,
    EventType,
    FinishedPayload,
    ResultPartPayload,
    ResultPayload,
)
from opspawn.runner.exits import ExitReason, RunOutcome
from opspawn.runner.report import report_outcome, termination_message
from tests.unit.runner.loop.scripted import RecordingSink

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

ONE_MB = "".join(f"{n:07d} the quick brown fox jumps over the lazy dog\n" for n in range(20_000))


def no_redaction(text: str) -> str:
    return text


async def report(outcome: RunOutcome) -> RecordingSink:
    sink = RecordingSink()
    await report_outcome(sink, outcome, duration_ms=1234, redact=no_redaction)
    return sink


async def test_a_result_that_fits_is_one_event() -> None:
    sink = await report(RunOutcome(reason=ExitReason.COMPLETED, steps=2, result="All done."))
    assert sink.types() == [EventType.RESULT, EventType.FINISHED]
    assert sink.of(ResultPayload) == [ResultPayload.of("All done.")]


async def test_a_1_mb_result_is_followed_by_parts_carrying_all_of_it() -> None:
    assert len(ONE_MB.encode()) > 1_000_000
    sink = await report(RunOutcome(reason=ExitReason.COMPLETED, steps=3, result=ONE_MB))

    parts = sink.of(ResultPartPayload)
    assert len(parts) == 6
    assert sink.types() == [EventType.RESULT, *[EventType.RESULT_PART] * 6, EventType.FINISHED]
    assert [part.index for part in parts] == list(range(6))
    assert {part.count for part in parts} == {6}
    full = "".join(part.text for part in parts)
    assert full == ONE_MB
    (result,) = sink.of(ResultPayload)
    assert result.size_bytes == len(ONE_MB.encode())
    assert result.sha256 == hashlib.sha256(full.encode()).hexdigest()
    (finished,) = sink.of(FinishedPayload)
    assert (finished.reason, finished.exit_code, finished.steps) == ("Completed", 0, 3)


async def test_a_large_structured_result_is_carried_as_its_json_text() -> None:
    structured = {"lines": ONE_MB.splitlines()}
    text = json.dumps(structured, ensure_ascii=False)
    sink = await report(
        RunOutcome(reason=ExitReason.COMPLETED, steps=1, result=text, structured=structured)
    )
    full = "".join(part.text for part in sink.of(ResultPartPayload))
    assert json.loads(full) == structured
    assert sink.types()[0] is EventType.RESULT and sink.types()[-1] is EventType.FINISHED


async def test_a_failed_attempt_has_no_result_and_no_parts() -> None:
    sink = await report(RunOutcome(reason=ExitReason.MAX_STEPS_REACHED, message="10 steps"))
    assert sink.types() == [EventType.ERROR, EventType.FINISHED]
    (error,) = sink.of(ErrorPayload)
    assert error.reason == "MaxStepsReached"


def test_the_termination_message_stays_bounded_for_a_1_mb_result() -> None:
    message = termination_message(
        RunOutcome(reason=ExitReason.COMPLETED, result=ONE_MB), no_redaction
    )
    assert len(message.to_bytes()) <= 4096
    assert message.result_truncated
    assert message.result_size_bytes == len(ONE_MB.encode())
