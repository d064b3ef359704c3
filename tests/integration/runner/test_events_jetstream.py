"""The event publisher against a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from opspawn.api.events import (
    MAX_EVENT_BYTES,
    MSG_ID_HEADER,
    STREAM_NAME,
    EventType,
    EventVerificationError,
    LogPayload,
    ResultPartPayload,
    ResultPayload,
    RunnerEvent,
    SigningKey,
    StepPayload,
    TaskRef,
    ToolCallPayload,
    build_event,
    sign_event,
    verify_event,
)
from opspawn.dev.nats import NatsServer
from opspawn.operator.audit import AuditStore
from opspawn.runner.events import EventDeliveryError, EventPublisher, PublisherSettings
from opspawn.runner.exits import ExitReason, RunOutcome
from opspawn.runner.report import report_outcome

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

KEY = SigningKey(os.urandom(32))
TASK = TaskRef(
    namespace="team-a",
    task_name="summarise",
    task_uid="5d1c8a2e-7f5e-4c1b-9a3f-0c4e2b1d9e77",
    attempt=1,
)
FAST = PublisherSettings(deadline_seconds=30, ack_timeout_seconds=1, max_backoff_seconds=0.5)


def runner_user(server: NatsServer) -> str:
    """TASK's NATS user, as the operator mints it into the per-task Secret."""
    return server.issuer.runner_credentials(TASK.namespace, TASK.task_uid, time.time() + 3600)


async def stored_events(nc: NatsClient) -> list[tuple[dict[str, str], RunnerEvent]]:
    """Every message of the event stream in stream order: (headers, verified event)."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM_NAME)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(STREAM_NAME, seq)
        except NotFoundError:
            continue
        assert msg.data is not None
        assert msg.subject is not None
        out.append((msg.headers or {}, verify_event(msg.data, KEY, subject=msg.subject)))
    return out


async def test_every_event_lands_signed_and_in_order(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    async with await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    ) as publisher:
        emitted = [await publisher.emit(StepPayload(step=i)) for i in range(1, 31)]
        call = ToolCallPayload(call_id="c", tool="calculator", arguments={"e": "1"}, allowed=True)
        emitted.append(await publisher.emit(call))
    assert publisher.last_acknowledged == 31
    stored = await stored_events(event_stream)
    assert [event for _, event in stored] == emitted
    assert [event.sequence for _, event in stored] == list(range(1, 32))
    # The header is the task key's HMAC of the event id: stable for retries, and neither the
    # id itself nor anything another task's key would give.
    assert all(headers[MSG_ID_HEADER] == KEY.message_id(event.id) for headers, event in stored)
    assert all(headers[MSG_ID_HEADER] != event.id for headers, event in stored)
    other = SigningKey(os.urandom(32))
    assert all(headers[MSG_ID_HEADER] != other.message_id(event.id) for headers, event in stored)


async def test_concurrent_emits_are_stored_in_sequence_order(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    settings = PublisherSettings(queue_size=1, ack_timeout_seconds=1)
    async with await EventPublisher.connect(
        nats_server.url, TASK, KEY, settings, credentials=runner_user(nats_server)
    ) as publisher:
        await asyncio.gather(*(publisher.emit(LogPayload(message=str(i))) for i in range(40)))
    stored = await stored_events(event_stream)
    assert [event.sequence for _, event in stored] == list(range(1, 41))


async def test_stored_event_does_not_verify_with_another_key(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    async with await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    ) as publisher:
        await publisher.emit(LogPayload(message="hello"))
    msg = await event_stream.jetstream().get_msg(STREAM_NAME, 1)
    assert msg.data is not None
    with pytest.raises(EventVerificationError):
        verify_event(msg.data, SigningKey(os.urandom(32)))


async def test_duplicate_publish_is_dropped_by_jetstream(event_stream: NatsClient) -> None:
    js = event_stream.jetstream()
    event = sign_event(build_event(TASK, 1, LogPayload(message="once")), KEY)
    headers = {MSG_ID_HEADER: KEY.message_id(event.id)}
    first = await js.publish(TASK.subject, event.to_bytes(), stream=STREAM_NAME, headers=headers)
    again = await js.publish(TASK.subject, event.to_bytes(), stream=STREAM_NAME, headers=headers)
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert [e for _, e in await stored_events(event_stream)] == [event]


async def test_publisher_survives_a_nats_restart(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    publisher = await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    )
    for i in range(1, 11):
        await publisher.emit(StepPayload(step=i))
    await publisher.flush()
    assert publisher.last_acknowledged == 10

    await asyncio.to_thread(nats_server.stop)
    for i in range(11, 21):  # accepted while NATS is down: must not be lost
        await publisher.emit(StepPayload(step=i))
    assert publisher.last_acknowledged == 10
    await asyncio.to_thread(nats_server.start)  # same port, same store
    for i in range(21, 31):
        await publisher.emit(StepPayload(step=i))
    await publisher.close()

    async with await _connect(nats_server) as nc:
        stored = await stored_events(nc)
    assert [event.sequence for _, event in stored] == list(range(1, 31))
    assert [event.payload for _, event in stored] == [StepPayload(step=i) for i in range(1, 31)]


async def test_publisher_reports_an_event_it_could_not_deliver(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    settings = PublisherSettings(
        deadline_seconds=1, ack_timeout_seconds=0.2, max_backoff_seconds=0.1
    )
    publisher = await EventPublisher.connect(
        nats_server.url, TASK, KEY, settings, credentials=runner_user(nats_server)
    )
    await publisher.emit(StepPayload(step=1))
    await publisher.flush()
    await asyncio.to_thread(nats_server.stop)
    lost = await publisher.emit(StepPayload(step=2))
    with pytest.raises(EventDeliveryError, match=f"event {lost.id} .* not acknowledged"):
        await publisher.flush()
    with pytest.raises(EventDeliveryError):
        await publisher.emit(StepPayload(step=3))
    with pytest.raises(EventDeliveryError):
        await publisher.close()
    assert publisher.last_acknowledged == 1


async def _connect(server: NatsServer) -> NatsClient:
    return await nats.connect(**server.connect_options())


async def test_close_gives_up_after_its_timeout(
    nats_server: NatsServer, event_stream: NatsClient
) -> None:
    publisher = await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    )
    await asyncio.to_thread(nats_server.stop)
    await publisher.emit(StepPayload(step=1))
    await publisher.emit(StepPayload(step=2))
    with pytest.raises(
        EventDeliveryError, match=r"2 events were not acknowledged by JetStream within 0\.5s"
    ):
        await publisher.close(wait_seconds=0.5)


async def test_a_1_mb_result_reaches_the_stream_in_parts_and_the_audit_store_whole(
    nats_server: NatsServer, event_stream: NatsClient, tmp_path: Path
) -> None:
    text = "".join(f"{n:07d} ünïcödé résult line — 😀\n" for n in range(30_000))
    assert len(text.encode()) > 1_000_000
    outcome = RunOutcome(reason=ExitReason.COMPLETED, steps=4, result=text)
    async with await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    ) as publisher:
        await publisher.emit(StepPayload(step=1))
        await report_outcome(publisher, outcome, duration_ms=10, redact=lambda s: s)

    stored = await stored_events(event_stream)
    events = [event for _, event in stored]
    parts = [e.payload for e in events if isinstance(e.payload, ResultPartPayload)]
    assert [e.type for e in events] == [
        EventType.STEP,
        EventType.RESULT,
        *[EventType.RESULT_PART] * len(parts),
        EventType.FINISHED,
    ]
    assert len(parts) > 1
    assert all(len(event.to_bytes()) <= MAX_EVENT_BYTES for event in events)
    result = events[1]
    assert isinstance(result.payload, ResultPayload) and result.truncated
    assert not any(e.truncated for e in events if e.type is EventType.RESULT_PART)
    full = "".join(part.text for part in sorted(parts, key=lambda p: p.index))
    assert full == text
    assert hashlib.sha256(full.encode()).hexdigest() == result.payload.sha256

    with AuditStore(f"sqlite:///{tmp_path / 'audit.db'}") as audit:
        audit.migrate()
        audit.record_batch(events)
        (attempt,) = audit.attempts(TASK.task_uid)
    assert attempt.result_text == text
    assert attempt.result_parts == len(parts)
    assert attempt.exit_code == 0


async def test_a_1_mb_structured_result_is_published_promptly_and_stored_whole(
    nats_server: NatsServer, event_stream: NatsClient, tmp_path: Path
) -> None:
    structured = {"rows": [{"n": n, "name": f"row {n}"} for n in range(40_000)]}
    text = json.dumps(structured, ensure_ascii=False)
    assert len(text.encode()) > 1_000_000
    outcome = RunOutcome(reason=ExitReason.COMPLETED, steps=1, result=text, structured=structured)
    async with await EventPublisher.connect(
        nats_server.url, TASK, KEY, FAST, credentials=runner_user(nats_server)
    ) as publisher:
        async with asyncio.timeout(10):  # cut a short string at a time, it took minutes
            await report_outcome(publisher, outcome, duration_ms=10, redact=lambda s: s)

    events = [event for _, event in await stored_events(event_stream)]
    assert events[0].type is EventType.RESULT and events[-1].type is EventType.FINISHED
    assert isinstance(events[0].payload, ResultPayload) and events[0].truncated
    with AuditStore(f"sqlite:///{tmp_path / 'audit.db'}") as audit:
        audit.migrate()
        audit.record_batch(events)
        (attempt,) = audit.attempts(TASK.task_uid)
    assert attempt.result_text == text
    assert attempt.result_structured == structured
