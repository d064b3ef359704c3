"""Real, signed runner events for the audit store's tests (built the way the runner builds them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue

from opspawn.api.events import (
    EventPayload,
    FinishedPayload,
    LlmCallPayload,
    LogPayload,
    ResultPayload,
    RunnerEvent,
    SigningKey,
    StartedPayload,
    StepPayload,
    TaskRef,
    ToolCallPayload,
    ToolResultPayload,
    UsagePayload,
    build_event,
    result_parts,
    sign_event,
)
from opspawn.operator.audit.schema import dead_letters, events, security_events, tasks

KEY = SigningKey(b"audit-test-signing-key-0123456789")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NAMESPACE = "team-a"
NAME = "summarise"
UID = "0f4c2a9e-1111-2222-3333-444455556666"
STRUCTURED: dict[str, JsonValue] = {"summary": "All done.", "items": [1, 2, 3]}


def usage_after(step: int) -> UsagePayload:
    """The cumulative usage the runner reports after `step` steps."""
    return UsagePayload(
        input_tokens=100 * step,
        output_tokens=20 * step,
        cached_tokens=10 * step,
        reasoning_tokens=5 * step,
        total_tokens=120 * step,
        cost_usd=0.001 * step,
    )


def attempt_payloads(
    steps: int,
    *,
    provider: str = "openai",
    model: str = "gpt-4.1-mini",
    result: str | None = "All done.",
    structured: JsonValue = STRUCTURED,
    exit_code: int = 0,
    reason: str = "Completed",
) -> list[EventPayload]:
    """started, then per step: step, llm_call, tool_call, tool_result, usage; then a log line,
    the result (when there is one, followed by its parts when it is too large for its event,
    as the runner sends it) and finished."""
    payloads: list[EventPayload] = [
        StartedPayload(
            model_provider=provider, model_name=model, runner_version="0.1", pod_name="pod-1"
        )
    ]
    for step in range(1, steps + 1):
        payloads += [
            StepPayload(step=step, summary=f"step {step}"),
            LlmCallPayload(
                step=step,
                provider=provider,
                model=model,
                input_tokens=100,
                output_tokens=20,
                duration_ms=250,
                finish_reason="tool_calls",
                tool_calls=1,
                cost_usd=0.001,
                text="Let me look that up.",
            ),
            ToolCallPayload(
                step=step,
                call_id=f"call-{step}",
                tool="search",
                arguments={"q": "notes"},
                allowed=True,
            ),
            ToolResultPayload(
                step=step,
                call_id=f"call-{step}",
                tool="search",
                content="found 3 notes",
                duration_ms=12,
            ),
            usage_after(step),
        ]
    payloads.append(LogPayload(level="info", message="wrapping up"))
    if result is not None:
        payloads.append(ResultPayload.of(result, structured))
        payloads += result_parts(result, structured)
    payloads.append(
        FinishedPayload(exit_code=exit_code, reason=reason, steps=steps, duration_ms=4321)
    )
    return payloads


def signed(
    payloads: Sequence[EventPayload],
    *,
    uid: str = UID,
    attempt: int = 1,
    namespace: str = NAMESPACE,
    name: str = NAME,
    start: datetime = T0,
    first_sequence: int = 1,
) -> list[RunnerEvent]:
    """The payloads as signed events of one attempt, one second apart from `start` on."""
    ref = TaskRef(namespace=namespace, task_name=name, task_uid=uid, attempt=attempt)
    return [
        sign_event(build_event(ref, sequence, payload, time=start + timedelta(seconds=offset)), KEY)
        for offset, (sequence, payload) in enumerate(
            enumerate(payloads, start=first_sequence), start=1
        )
    ]


def attempt_events(steps: int = 3, **options: Any) -> list[RunnerEvent]:
    """A whole attempt (see `attempt_payloads`); `options` go to `signed` or `attempt_payloads`."""
    payload_options = {
        key: options.pop(key)
        for key in ("provider", "model", "result", "structured", "exit_code", "reason")
        if key in options
    }
    return signed(attempt_payloads(steps, **payload_options), **options)


def large_text(size: int = 1_000_000) -> str:
    """`size` bytes of multi-line text with multi-byte characters (about 1 MB by default)."""
    line = "{:07d} résumé of the findings, step by step — ok ✓\n"
    unit = len(line.format(0).encode())
    text = "".join(line.format(n) for n in range(size // unit + 1))
    return text.encode()[:size].decode(errors="ignore")


def many_events(total: int, *, per_attempt: int = 499) -> list[RunnerEvent]:
    """`total` events over several tasks: whole attempts of `per_attempt` events (5 per step
    plus 4), the last one cut short."""
    out: list[RunnerEvent] = []
    number = 0
    while len(out) < total:
        steps = max(1, -(-(min(per_attempt, total - len(out)) - 4) // 5))
        events_ = attempt_events(
            steps,
            uid=f"bulk-{number:04d}",
            name=f"bulk-{number:04d}",
            start=T0 + timedelta(hours=number),
        )
        out += events_[: total - len(out)]
        number += 1
    return out


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every audit table, in a stable order (to compare database states)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table.name: [
                    tuple(row)
                    for row in connection.execute(
                        sa.select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in (tasks, events, security_events, dead_letters)
            }
    finally:
        engine.dispose()
