"""The agent loop against a scripted in-process model: every way a run ends."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from opspawn.api.events import (
    EventType,
    LlmCallPayload,
    LogPayload,
    MemoryPayload,
    ToolCallPayload,
    ToolResultPayload,
    UsagePayload,
)
from opspawn.runner.exits import ExitReason
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import (
    DeadlineExceededError,
    ModelAuthError,
    ModelError,
    ModelRequestError,
    ModelServerError,
)
from opspawn.runner.model.pricing import PriceTable
from opspawn.runner.model.types import Role, StopReason, TokenUsage, ToolCall
from tests.unit.runner.loop.scripted import (
    MODEL,
    PROVIDER,
    Broken,
    Echo,
    Hanging,
    ScriptedModel,
    call,
    harness,
    task_spec,
    text_turn,
    tools_turn,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

T = EventType


async def test_two_tools_then_answer_completes_with_events_in_order() -> None:
    echo, other = Echo(), Echo("shout")
    first, second = call("echo", text="a"), call("shout", text="b")
    run = harness(ScriptedModel([tools_turn(first, second), text_turn("done: a b")]), [echo, other])

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COMPLETED
    assert outcome.result == "done: a b"
    assert outcome.steps == 2
    assert run.sink.types() == [
        T.STEP, T.LLM_CALL, T.USAGE,
        T.TOOL_CALL, T.TOOL_CALL, T.TOOL_RESULT, T.TOOL_RESULT,
        T.STEP, T.LLM_CALL, T.USAGE,
    ]  # fmt: skip
    results = {r.call_id: r for r in run.sink.of(ToolResultPayload)}
    assert results[first.id].content == "a" and results[second.id].content == "b"
    assert all(r.step == 1 for r in results.values())
    tool_message = run.model.sent[1][-1]
    assert tool_message.role is Role.TOOL
    assert [r.call_id for r in tool_message.tool_results] == [first.id, second.id]
    assert [t.name for t in run.model.offered[0]] == ["echo", "shout"]
    llm_calls = run.sink.of(LlmCallPayload)
    assert [c.tool_calls for c in llm_calls] == [2, 0]
    assert llm_calls[0].provider == PROVIDER and llm_calls[0].model == MODEL


async def test_usage_events_are_cumulative_with_cost() -> None:
    run = harness(ScriptedModel([tools_turn(call("echo")), text_turn("ok")]), [Echo()])
    await run.loop.run(run.registry)
    usage = run.sink.of(UsagePayload)
    assert [u.total_tokens for u in usage] == [120, 240]
    assert usage[-1].cost_usd == pytest.approx(
        PriceTable.builtin().cost(PROVIDER, MODEL, TokenUsage(input_tokens=200, output_tokens=40))
    )


async def test_tool_errors_and_refusals_go_back_to_the_model_as_results() -> None:
    broken, refused = call("broken"), call("rm_rf", path="/")
    malformed = ToolCall(id="bad-args", name="echo", malformed_arguments="{not json")
    run = harness(
        ScriptedModel([tools_turn(broken, refused, malformed), text_turn("recovered")]),
        [Broken(), Echo()],
    )

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COMPLETED
    results = run.model.sent[1][-1].tool_results
    assert all(r.is_error for r in results)
    assert "the disk is on fire" in results[0].content
    assert "not allowed" in results[1].content
    assert "not valid JSON" in results[2].content
    decisions = {d.call_id: d for d in run.sink.of(ToolCallPayload)}
    assert decisions[broken.id].allowed
    assert not decisions[refused.id].allowed and "not allowed" in decisions[refused.id].reason


async def test_tool_calls_of_one_turn_run_in_parallel_up_to_the_cap() -> None:
    echo = Echo()
    calls = [call("echo", text=str(i)) for i in range(6)]
    spec = task_spec(tools={"maxParallelCalls": 2})
    run = harness(ScriptedModel([tools_turn(*calls), text_turn("ok")]), [echo], spec=spec)

    await run.loop.run(run.registry)

    assert len(echo.calls) == 6
    assert echo.most_at_once == 2
    assert [r.content for r in run.model.sent[1][-1].tool_results] == [str(i) for i in range(6)]


async def test_max_steps_stops_without_running_the_last_turns_tools() -> None:
    echo = Echo()
    model = ScriptedModel([lambda n: tools_turn(call("echo", text=str(n)))])
    run = harness(model, [echo], spec=task_spec(limits={"maxSteps": 3}))

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.MAX_STEPS_REACHED
    assert outcome.steps == 3
    assert len(echo.calls) == 2
    assert "limits.maxSteps" in outcome.message


async def test_token_budget_stops_the_loop() -> None:
    model = ScriptedModel([lambda n: tools_turn(call("echo", text=str(n)))])
    run = harness(model, [Echo()], spec=task_spec(limits={"maxTokens": 250}))

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.TOKEN_BUDGET_EXCEEDED
    assert outcome.steps == 3  # 120, 240, 360 tokens
    assert outcome.exit_code == 3


async def test_cost_budget_stops_the_loop() -> None:
    prices = PriceTable.from_mapping({PROVIDER: {MODEL: {"input": 1000.0, "output": 1000.0}}})
    model = ScriptedModel([lambda n: tools_turn(call("echo", text=str(n)))])
    run = harness(model, [Echo()], spec=task_spec(limits={"maxCostUSD": 0.3}), prices=prices)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COST_BUDGET_EXCEEDED
    assert outcome.steps == 3  # 0.12, 0.24, 0.36 USD
    assert run.sink.of(UsagePayload)[-1].cost_usd == pytest.approx(0.36)


async def test_unknown_price_with_a_cost_budget_is_said_not_guessed() -> None:
    prices = PriceTable.from_mapping({})
    spec = task_spec(limits={"maxCostUSD": 0.01})
    run = harness(ScriptedModel([text_turn("ok")]), spec=spec, prices=prices)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COMPLETED
    (warning,) = run.sink.of(LogPayload)
    assert warning.level == "warning" and "price" in warning.message and MODEL in warning.message
    assert run.sink.of(UsagePayload)[-1].cost_usd is None


async def test_same_tool_call_repeated_stalls() -> None:
    echo = Echo()
    model = ScriptedModel([lambda n: tools_turn(call("echo", text="same"))])
    run = harness(model, [echo], spec=task_spec(limits={"maxRepeatedToolCalls": 3}))

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.STALLED
    assert outcome.steps == 3
    assert len(echo.calls) == 2  # the third identical call is not run
    assert outcome.exit_code == 1


async def test_model_error_at_the_deadline_is_a_timeout() -> None:
    error = DeadlineExceededError("no time left", provider=PROVIDER, last_error=None)
    run = harness(ScriptedModel([error]))
    outcome = await run.loop.run(run.registry)
    assert outcome.reason is ExitReason.TIMED_OUT
    assert outcome.exit_code == 4


async def test_tools_running_past_the_deadline_time_out() -> None:
    hanging = Hanging()
    deadline = Deadline(time.monotonic() + 0.3)
    run = harness(ScriptedModel([tools_turn(call("hang"))]), [hanging], deadline=deadline)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.TIMED_OUT
    assert hanging.cancelled


async def test_an_expired_deadline_stops_before_the_next_call() -> None:
    run = harness(ScriptedModel([text_turn("never")]), deadline=Deadline(time.monotonic() - 1))
    outcome = await run.loop.run(run.registry)
    assert outcome.reason is ExitReason.TIMED_OUT
    assert run.model.sent == []


@pytest.mark.parametrize(
    ("error", "reason", "code"),
    [
        (ModelServerError("503", provider=PROVIDER, status=503), ExitReason.MODEL_UNAVAILABLE, 75),
        (ModelRequestError("400", provider=PROVIDER, status=400), ExitReason.MODEL_ERROR, 1),
        (ModelAuthError("401", provider=PROVIDER, status=401), ExitReason.MODEL_AUTH_FAILED, 2),
    ],
)
async def test_model_failures_map_to_their_reasons(
    error: ModelError, reason: ExitReason, code: int
) -> None:
    run = harness(ScriptedModel([error]))
    outcome = await run.loop.run(run.registry)
    assert (outcome.reason, int(outcome.exit_code)) == (reason, code)
    assert str(error) in outcome.message


async def test_content_filter_is_a_refusal() -> None:
    run = harness(ScriptedModel([text_turn("", stop=StopReason.CONTENT_FILTER)]))
    outcome = await run.loop.run(run.registry)
    assert outcome.reason is ExitReason.MODEL_REFUSED


SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
)


async def test_invalid_structured_output_is_repaired_then_accepted() -> None:
    model = ScriptedModel(
        [text_turn("forty-two"), text_turn('{"answer": "42"}'), text_turn('{"answer": 42}')]
    )
    spec = task_spec(outputSchema=SCHEMA, limits={"maxOutputRepairs": 2})
    run = harness(model, spec=spec)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COMPLETED
    assert outcome.structured == {"answer": 42}
    assert json.loads(outcome.result or "") == {"answer": 42}
    assert model.schemas[0] == json.loads(SCHEMA)
    repair = model.sent[1][-1]
    assert repair.role is Role.USER and "not JSON" in repair.text
    assert "/answer" in model.sent[2][-1].text
    assert len(run.sink.of(LogPayload)) == 2


async def test_structured_output_in_a_code_fence_is_accepted() -> None:
    run = harness(
        ScriptedModel([text_turn('```json\n{"answer": 1}\n```')]),
        spec=task_spec(outputSchema=SCHEMA),
    )
    outcome = await run.loop.run(run.registry)
    assert outcome.structured == {"answer": 1}


async def test_output_still_invalid_after_the_repairs_fails() -> None:
    spec = task_spec(outputSchema=SCHEMA, limits={"maxOutputRepairs": 1})
    run = harness(ScriptedModel([text_turn('{"answer": "no"}')]), spec=spec)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.OUTPUT_INVALID
    assert outcome.steps == 2
    assert "after 1 repair turns" in outcome.message
    assert outcome.result is None


async def test_terminate_cancels_the_model_call_in_flight() -> None:
    model = ScriptedModel([tools_turn(call("echo")), text_turn("never")], block_at=2)
    run = harness(model, [Echo()])

    running = asyncio.create_task(run.loop.run(run.registry))
    await asyncio.wait_for(model.blocked.wait(), 5)
    run.loop.terminate()
    outcome = await asyncio.wait_for(running, 5)

    assert outcome.reason is ExitReason.TERMINATED
    assert outcome.steps == 2
    assert outcome.exit_code == 143


async def test_terminate_cancels_tool_calls_in_flight() -> None:
    hanging = Hanging()
    run = harness(ScriptedModel([tools_turn(call("hang"))]), [hanging])

    running = asyncio.create_task(run.loop.run(run.registry))
    await asyncio.wait_for(hanging.started.wait(), 5)
    run.loop.terminate()
    outcome = await asyncio.wait_for(running, 5)

    assert outcome.reason is ExitReason.TERMINATED
    assert hanging.cancelled
    assert run.sink.types()[-1] is EventType.TOOL_CALL  # no half-written events


async def test_long_conversations_are_compacted_with_an_event() -> None:
    bulky = "x" * 2000
    model = ScriptedModel(
        [lambda n: tools_turn(call("echo", text=f"{n} {bulky}")) if n < 6 else text_turn("ok")]
    )
    spec = task_spec(memory={"shortTerm": {"maxTokens": 1000}})
    run = harness(model, [Echo()], spec=spec)

    outcome = await run.loop.run(run.registry)

    assert outcome.reason is ExitReason.COMPLETED
    compactions = run.sink.of(MemoryPayload)
    assert compactions and all(c.operation == "compact" for c in compactions)
    last = model.sent[-1]
    assert [m.role for m in last[:3]] == [Role.SYSTEM, Role.USER, Role.USER]
    assert last[3].role is Role.ASSISTANT
    assert "called echo" in last[2].text
