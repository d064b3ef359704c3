"""Attacks on the event pipeline through what a tenant controls: its runner's NATS credentials
(read from its own per-task Secret, as `edit` allows) and its per-task Secret itself. The real
operator, runner, nats-server with auth, and Postgres.

The promise each test checks: the attack ends as dead letters or security events, the operator
never exits, and another tenant's task still gets every event it published into the audit
store."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import urllib.error
import urllib.request
from typing import Any

import nats
import pytest
import sqlalchemy
from nats.aio.client import RawCredentials
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from opspawn.api.events import MSG_ID_HEADER, STREAM_NAME, event_subject, runner_inbox
from opspawn.dev.operator_process import OperatorProcess
from opspawn.operator.audit.schema import dead_letters
from opspawn.operator.consumer import durable_name
from opspawn.operator.runner_job import NATS_CREDENTIALS_KEY, SIGNING_KEY_KEY
from tests.helpers import wait_for
from tests.integration.operator.conftest import Tasks, agenttask
from tests.integration.operator.test_event_pipeline import Pipeline

SCRIPT = {"turns": [{"text": f"step {i}", "usage": {"input_tokens": 1}} for i in range(1)]}

POISON: list[tuple[bytes, dict[str, str] | None]] = [
    (b"[" * 200_000 + b"]" * 200_000, None),  # deeper than any parser's recursion limit
    (b'{"a":' * 500 + b"1" + b"}" * 500, None),
    (b'{"signature": "' + b"0" * 64 + b'", "id": 1, "id": 2}', None),
    (b'{"payload": NaN, "signature": "x"}', None),
    (b'{"n": 1e999999}', None),
    (b'{"n": ' + b"7" * 100_000 + b"}", None),
    (b"\xff\xfe\xfd not utf-8", None),
    ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), None),
    (json.dumps({"signature": "\ud800" * 64}).encode(), None),
    (b"", {MSG_ID_HEADER: "x" * 4000, "Nats-Expected-Stream": "nope-but-ignored"}),
    (b"\x00" * 1000, {"X-Odd": "\u00e9\u00e9"}),
]


def task(name: str) -> dict[str, Any]:
    return agenttask(
        name,
        goal="Say something.",
        model={"provider": "openai-compatible", "name": "mock", "baseURL": "http://models/v1"},
        limits={"maxSteps": 5, "timeoutSeconds": 120},
    )


def secret_of(tasks: Tasks, name: str) -> Any:
    (secret,) = tasks.core.list_namespaced_secret(
        tasks.namespace, label_selector=f"opspawn.io/task-name={name}"
    ).items
    return secret


async def _stream_ids(pipeline: Pipeline, subject: str) -> list[str]:
    connection = await nats.connect(**pipeline.nats.connect_options())
    try:
        subscription = await connection.jetstream().pull_subscribe(
            subject,
            stream=STREAM_NAME,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        found: list[str] = []
        while True:
            try:
                batch = await subscription.fetch(500, timeout=1)
            except TimeoutError:
                return found
            found += [str(json.loads(message.data)["id"]) for message in batch]
    finally:
        await connection.close()


def stored_ids(pipeline: Pipeline, uid: str) -> list[str]:
    store = pipeline.audit()
    try:
        return [row.event_id for row in store.events(task_uid=uid)]
    finally:
        store.close()


def security_reasons(pipeline: Pipeline, namespace: str) -> list[str]:
    store = pipeline.audit()
    try:
        return [row.reason for row in store.security_events(namespace=namespace)]
    finally:
        store.close()


def all_events_stored(pipeline: Pipeline, tasks: Tasks, name: str) -> bool:
    uid = tasks.get(name)["metadata"]["uid"]
    published = asyncio.run(_stream_ids(pipeline, event_subject(tasks.namespace, uid)))
    finished = any(i.endswith(f"/{len(published)}") for i in published)
    return bool(published) and finished and sorted(stored_ids(pipeline, uid)) == sorted(published)


async def _as_runner(
    pipeline: Pipeline, credentials: str, uid: str, messages: list[tuple[bytes, Any]], subject: str
) -> None:
    """Publish `messages` with a task's runner credentials, the way its runner could."""
    connection = await nats.connect(
        pipeline.nats.url,
        user_credentials=RawCredentials(credentials),
        inbox_prefix=runner_inbox(uid).encode(),
    )
    try:
        jetstream = connection.jetstream()
        for data, headers in messages:
            await jetstream.publish(subject, data, stream=STREAM_NAME, headers=headers)
    finally:
        await connection.close()


def dead_letter_count(pipeline: Pipeline) -> int:
    engine = sqlalchemy.create_engine(pipeline.postgres.url)
    try:
        with engine.connect() as connection:
            return len(connection.execute(sqlalchemy.select(dead_letters)).all())
    finally:
        engine.dispose()


def alive(operator: OperatorProcess) -> bool:
    return operator.process.popen is not None and operator.process.popen.poll() is None


def ready(operator: OperatorProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/readyz", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize("pipeline", [SCRIPT], indirect=True)
def test_a_tenant_cannot_crash_suppress_or_stall_the_pipeline(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    operator = pipeline.operator()
    tasks.create(task("attacker"))
    wait_for(lambda: tasks.finished("attacker"), 120, "the attacker's own task to finish")
    attacker = tasks.get("attacker")["metadata"]
    secret = secret_of(tasks, "attacker")
    credentials = base64.b64decode(secret.data[NATS_CREDENTIALS_KEY]).decode()
    own_subject = event_subject(tasks.namespace, attacker["uid"])

    # The victim is created while the operator is away, so its uid is known before its runner
    # starts: the attacker publishes the victim's would-be event ids as Nats-Msg-Id first.
    operator.stop()
    tasks.create(task("victim"))
    victim_uid = tasks.get("victim")["metadata"]["uid"]
    squatted = [(b"{}", {MSG_ID_HEADER: f"{victim_uid}/1/{n}"}) for n in range(1, 40)]
    # Poison on its own subject, and its own Secret's signing key made unusable.
    asyncio.run(_as_runner(pipeline, credentials, attacker["uid"], squatted + POISON, own_subject))
    tasks.core.patch_namespaced_secret(
        secret.metadata.name,
        tasks.namespace,
        {"data": {SIGNING_KEY_KEY: base64.b64encode(b"\xff").decode()}},
    )
    forged = json.dumps({"id": "x", "signature": "0" * 64}).encode()
    asyncio.run(_as_runner(pipeline, credentials, attacker["uid"], [(forged, None)], own_subject))

    operator = pipeline.operator()  # a fresh start meets every poison message first

    wait_for(lambda: tasks.finished("victim"), 120, "the victim's task to finish")
    wait_for(lambda: all_events_stored(pipeline, tasks, "victim"), 60, "the victim's events")
    assert tasks.finished("victim")["reason"] == "Completed"  # type: ignore[index]
    reasons = wait_for(
        lambda: (
            r
            if "UnusableSigningKey" in (r := security_reasons(pipeline, tasks.namespace))
            else None
        ),
        30,
        "the unusable key as a security event",
    )
    assert alive(operator) and ready(operator)
    assert "UnusableSigningKey" in reasons
    # The poison ended as dead letters, all but the one that is a JSON object (its lone
    # surrogates are valid JSON escapes): that one, the squatted ids and the forged event
    # name the attacker's task, whose key is unusable, so they are security events.
    assert dead_letter_count(pipeline) == len(POISON) - 1


@pytest.mark.parametrize("pipeline", [SCRIPT], indirect=True)
def test_a_deleted_consumer_is_recreated_and_readiness_follows_the_pipeline(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    operator = pipeline.operator()
    assert ready(operator)

    async def delete_consumer() -> None:
        connection = await nats.connect(**pipeline.nats.connect_options())
        try:
            await connection.jetstream().delete_consumer(
                STREAM_NAME, durable_name([tasks.namespace])
            )
        finally:
            await connection.close()

    asyncio.run(delete_consumer())
    tasks.create(task("after-delete"))
    wait_for(lambda: all_events_stored(pipeline, tasks, "after-delete"), 120, "ingest to resume")

    # NATS away: the operator stops being ready, and is ready again once NATS is back.
    assert pipeline.nats.process is not None and pipeline.nats.process.popen is not None
    pipeline.nats.process.popen.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not ready(operator), 60, "readiness to drop while NATS is frozen")
    finally:
        pipeline.nats.process.popen.send_signal(signal.SIGCONT)
    wait_for(lambda: ready(operator), 60, "readiness to come back")
    tasks.create(task("after-outage"))
    wait_for(lambda: all_events_stored(pipeline, tasks, "after-outage"), 120, "ingest again")

    # The audit store refusing commits makes it unready too, and nothing is lost.
    pipeline.postgres.pause()
    try:
        tasks.create(task("during-pg-outage"))
        wait_for(lambda: not ready(operator), 90, "readiness to drop while commits fail")
    finally:
        pipeline.postgres.start()
    wait_for(lambda: ready(operator), 60, "readiness to come back with Postgres")
    wait_for(lambda: all_events_stored(pipeline, tasks, "during-pg-outage"), 120, "the backlog")
    assert alive(operator)
