"""The event pipeline end to end: the real runner publishes signed events to JetStream, the
operator verifies them, commits them to a real Postgres, acks, and mirrors them into status.

Each fault test checks the same promise: the task's audit rows are exactly the events its
runner published (same count, same ids), whatever happened in between.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import sqlalchemy
import yaml
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from opspawn.api.events import (
    STREAM_NAME,
    LogPayload,
    SigningKey,
    TaskRef,
    build_event,
    event_subject,
    sign_event,
)
from opspawn.dev.nats import NatsServer
from opspawn.dev.operator_process import RUNNER_COMMAND, OperatorProcess
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.postgres import Postgres
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.stack import DevStack
from opspawn.operator.audit import AuditStore
from opspawn.operator.audit.schema import dead_letters
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask

STEPS = 6
SCRIPT = {
    "turns": [
        {
            "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{i}*7"}}],
            "delay": 0.5,
            "usage": {"input_tokens": 100, "output_tokens": 10},
        }
        for i in range(STEPS)
    ]
    + [{"text": "All products computed.", "usage": {"input_tokens": 100, "output_tokens": 5}}]
}


@dataclass
class Pipeline:
    """NATS and Postgres of the test's own (so they can be stopped), the mock model, and a
    way to start operators wired to them with the real runner."""

    nats: NatsServer
    postgres: Postgres
    model_url: str
    start: StartOperator

    def operator(self) -> OperatorProcess:
        return self.start(
            "--database-url",
            self.postgres.url,
            f"--model-base-url=openai-compatible={self.model_url}/v1",
            *self.nats.operator_auth_args(),
            runner_command=shlex.join(RUNNER_COMMAND),
            nats_url=self.nats.url,
        )

    def audit(self) -> AuditStore:
        return AuditStore(self.postgres.url)


@pytest.fixture
def pipeline(
    tmp_path: Path, start_test_operator: StartOperator, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """Parametrize indirectly with a mock-model script to replace SCRIPT."""
    nats_server = NatsServer(tmp_path / "nats", auth=True)
    postgres = Postgres(tmp_path / "postgres")
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump(getattr(request, "param", SCRIPT)))
    port = free_port()
    model = ManagedProcess(
        name="mock-model",
        argv=[
            *RUNNER_COMMAND[:1],
            "-m",
            "opspawn.cli",
            "dev",
            "mock-model",
            "--port",
            str(port),
            "--script",
            str(script),
        ],
        log_path=tmp_path / "mock-model.log",
    )
    try:
        nats_server.start()
        postgres.start()
        model.start()
        model.wait_ready(lambda: is_listening(port), timeout=30)
        yield Pipeline(nats_server, postgres, f"http://127.0.0.1:{port}", start_test_operator)
    finally:
        model.stop()
        postgres.stop()
        nats_server.stop()


def task(name: str) -> dict[str, Any]:
    return agenttask(
        name,
        goal="Multiply a few numbers.",
        model={"provider": "openai-compatible", "name": "mock", "baseURL": "http://models/v1"},
        tools={"builtin": [{"name": "calculator"}]},
        limits={"maxSteps": 20, "timeoutSeconds": 120},
    )


async def _stream_events(server: NatsServer, subject: str) -> list[dict[str, Any]]:
    """Every message the stream holds on `subject`, in order, as parsed JSON."""
    connection = await nats.connect(**server.connect_options())
    try:
        jetstream = connection.jetstream()
        subscription = await jetstream.pull_subscribe(
            subject,
            stream=STREAM_NAME,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        found: list[dict[str, Any]] = []
        while True:
            try:
                batch = await subscription.fetch(500, timeout=1)
            except TimeoutError:  # nats raises both its own and asyncio's
                return found
            found += [json.loads(message.data) for message in batch]
    finally:
        await connection.close()


async def _durable_drained(server: NatsServer) -> bool:
    """Whether every durable consumer of the stream has been delivered and acked everything."""
    connection = await nats.connect(**server.connect_options())
    try:
        jetstream = connection.jetstream()
        consumers = [
            c for c in await jetstream.consumers_info(STREAM_NAME) if c.config.durable_name
        ]
        return bool(consumers) and all(
            c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers
        )
    finally:
        await connection.close()


def consumer_drained(pipeline: Pipeline) -> bool:
    return asyncio.run(_durable_drained(pipeline.nats))


def published_ids(pipeline: Pipeline, namespace: str, uid: str) -> list[str]:
    events = asyncio.run(_stream_events(pipeline.nats, event_subject(namespace, uid)))
    return [str(event["id"]) for event in events]


def stored_ids(pipeline: Pipeline, uid: str) -> list[str]:
    store = pipeline.audit()
    try:
        return [row.event_id for row in store.events(task_uid=uid)]
    finally:
        store.close()


def assert_audit_matches_stream(pipeline: Pipeline, tasks: Tasks, name: str) -> None:
    uid = tasks.get(name)["metadata"]["uid"]
    published = sorted(set(published_ids(pipeline, tasks.namespace, uid)))
    assert published, "the runner published nothing"
    assert any(i.endswith(f"/{len(published)}") for i in published)
    wait_for(lambda: consumer_drained(pipeline), 60, "the consumer to ack every event")
    assert sorted(stored_ids(pipeline, uid)) == published


def finish(tasks: Tasks, name: str) -> dict[str, Any]:
    return wait_for(lambda: tasks.finished(name), 120, f"{name} to finish")


# --------------------------------------------------------------------------- happy path


def opspawn(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "opspawn.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_events_reach_postgres_and_status(
    pipeline: Pipeline, tasks: Tasks, stack: DevStack
) -> None:
    kubeconfig = stack.kubeconfig
    pipeline.operator()
    tasks.create(task("mirrored"))

    assert finish(tasks, "mirrored")["reason"] == "Completed"

    assert_audit_matches_stream(pipeline, tasks, "mirrored")
    status = wait_for(
        lambda: (
            (s := tasks.status("mirrored")).get("lastEvent", {}).get("type") == "finished" and s
        ),
        30,
        "the finished event in status",
    )
    assert status["steps"] == STEPS + 1
    assert status["usage"]["inputTokens"] == 100 * (STEPS + 1)
    assert status["usage"]["outputTokens"] == 10 * STEPS + 5
    assert status["result"]["preview"] == "All products computed."
    store = pipeline.audit()
    try:
        attempts = store.attempts(namespace=tasks.namespace, name="mirrored")
    finally:
        store.close()
    assert [a.attempt for a in attempts] == [1]
    assert attempts[0].result_text == "All products computed."
    assert attempts[0].input_tokens == 100 * (STEPS + 1)
    assert (
        attempts[0].phase == "Succeeded" and attempts[0].spec["goal"] == "Multiply a few numbers."
    )

    # What a user runs to look back at the task, from Postgres and from the stream.
    environment = {
        **os.environ,
        "DATABASE_URL": pipeline.postgres.url,
        "NATS_URL": pipeline.nats.url,
        "NATS_CREDS": str(pipeline.nats.admin_credentials),
        "KUBECONFIG": str(kubeconfig),
    }
    shown = opspawn(environment, "audit", "show", f"{tasks.namespace}/mirrored")
    assert "All products computed." in shown.stdout and "Succeeded" in shown.stdout
    logs = opspawn(environment, "logs", f"{tasks.namespace}/mirrored")
    lines = logs.stdout.splitlines()
    assert len(lines) == len(
        published_ids(pipeline, tasks.namespace, tasks.get("mirrored")["metadata"]["uid"])
    )
    assert "started" in lines[0] and "finished" in lines[-1]


BIG_RESULT = "".join(f"line {i:06d}: {'x' * 50}\n" for i in range(17_000))  # ~1 MB


@pytest.mark.parametrize("pipeline", [{"turns": [{"text": BIG_RESULT}]}], indirect=True)
def test_a_1_mb_result_is_whole_in_postgres_and_bounded_in_status(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    assert len(BIG_RESULT.encode()) > 1_000_000
    pipeline.operator()
    tasks.create(task("big"))

    assert finish(tasks, "big")["reason"] == "Completed"

    assert_audit_matches_stream(pipeline, tasks, "big")
    task_object = tasks.get("big")
    assert len(json.dumps(task_object["status"])) < 16_384
    result = task_object["status"]["result"]
    assert result["truncated"] is True
    assert result["sizeBytes"] == len(BIG_RESULT.encode())
    assert BIG_RESULT.startswith(result["preview"])
    store = pipeline.audit()
    try:
        (attempt,) = store.attempts(task_object["metadata"]["uid"])
    finally:
        store.close()
    assert attempt.result_text == BIG_RESULT


# --------------------------------------------------------------------------- faults


def test_postgres_down_for_30s_mid_run_loses_nothing(pipeline: Pipeline, tasks: Tasks) -> None:
    pipeline.operator()
    tasks.create(task("pg-outage"))
    wait_for(lambda: tasks.status("pg-outage").get("steps", 0) >= 1, 60, "a first step")

    pipeline.postgres.pause()
    paused_at = time.monotonic()
    # Status keeps moving from the events while Postgres is away, and the task finishes.
    assert finish(tasks, "pg-outage")["reason"] == "Completed"
    wait_for(lambda: tasks.status("pg-outage").get("steps") == STEPS + 1, 30, "all steps")
    wait_for(lambda: time.monotonic() - paused_at >= 30, 40, "30 seconds of outage")
    pipeline.postgres.start()

    assert_audit_matches_stream(pipeline, tasks, "pg-outage")


def test_nats_restarted_mid_run_loses_nothing(pipeline: Pipeline, tasks: Tasks) -> None:
    pipeline.operator()
    tasks.create(task("nats-restart"))
    wait_for(lambda: tasks.status("nats-restart").get("steps", 0) >= 2, 60, "two steps")

    pipeline.nats.stop()
    pipeline.nats.start()

    finish(tasks, "nats-restart")
    assert_audit_matches_stream(pipeline, tasks, "nats-restart")


def test_operator_killed_mid_run_loses_nothing(pipeline: Pipeline, tasks: Tasks) -> None:
    operator = pipeline.operator()
    tasks.create(task("op-killed"))
    wait_for(lambda: tasks.status("op-killed").get("steps", 0) >= 2, 60, "two steps")

    assert operator.process.popen is not None
    operator.process.popen.send_signal(signal.SIGKILL)
    operator.process.popen.wait(10)
    pipeline.operator()

    assert finish(tasks, "op-killed")["reason"] == "Completed"
    assert_audit_matches_stream(pipeline, tasks, "op-killed")
    assert len(tasks.jobs("op-killed")) == 1


async def _republish_without_dedup(server: NatsServer, subject: str) -> int:
    """Publish every event of `subject` again, without Nats-Msg-Id, so the stream keeps both."""
    events = await _stream_events(server, subject)
    connection = await nats.connect(**server.connect_options())
    try:
        jetstream = connection.jetstream()
        for event in events:
            await jetstream.publish(subject, json.dumps(event).encode())
    finally:
        await connection.close()
    return len(events)


def test_every_event_published_twice_is_stored_once(pipeline: Pipeline, tasks: Tasks) -> None:
    pipeline.operator()
    tasks.create(task("twice"))
    finish(tasks, "twice")
    uid = tasks.get("twice")["metadata"]["uid"]
    subject = event_subject(tasks.namespace, uid)

    count = asyncio.run(_republish_without_dedup(pipeline.nats, subject))

    assert len(published_ids(pipeline, tasks.namespace, uid)) == 2 * count
    assert_audit_matches_stream(pipeline, tasks, "twice")
    wait_for(lambda: consumer_drained(pipeline), 30, "the copies to be consumed and acked")
    assert len(stored_ids(pipeline, uid)) == count


# --------------------------------------------------------------------------- forgery


def test_forged_and_misrouted_events_are_rejected_and_recorded(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    pipeline.operator()
    tasks.create(task("victim"))
    tasks.create(task("other"))
    finish(tasks, "victim")
    finish(tasks, "other")
    victim = tasks.get("victim")["metadata"]
    other = tasks.get("other")["metadata"]
    secrets = tasks.core.list_namespaced_secret(
        tasks.namespace, label_selector="opspawn.io/task-name=victim"
    ).items
    victim_key = SigningKey(base64.b64decode(secrets[0].data["signing-key"]).strip())

    def event(meta: dict[str, Any], sequence: int, key: SigningKey) -> bytes:
        ref = TaskRef(
            task_uid=meta["uid"], namespace=tasks.namespace, task_name=meta["name"], attempt=1
        )
        built = build_event(ref, sequence, LogPayload(message="forged: you have been pwned"))
        return sign_event(built, key).to_bytes()

    async def publish() -> None:
        connection = await nats.connect(**pipeline.nats.connect_options())
        try:
            jetstream = connection.jetstream()
            wrong_key = SigningKey(b"not-the-task-key-0123456789")
            await jetstream.publish(
                event_subject(tasks.namespace, victim["uid"]), event(victim, 900, wrong_key)
            )
            # Not an event at all: a poison message, dead-lettered once and never redelivered.
            await jetstream.publish(event_subject(tasks.namespace, victim["uid"]), b"{not json")
            # Rightly signed for the victim, but sent on another task's subject.
            await jetstream.publish(
                event_subject(tasks.namespace, other["uid"]), event(victim, 901, victim_key)
            )
        finally:
            await connection.close()

    asyncio.run(publish())

    def rejected() -> list[Any]:
        store = pipeline.audit()
        try:
            return list(store.security_events(namespace=tasks.namespace))
        finally:
            store.close()

    rows = wait_for(lambda: found if len(found := rejected()) == 2 else None, 30, "two rejections")
    assert {row.reason for row in rows} == {"VerificationFailed"}
    wait_for(lambda: consumer_drained(pipeline), 30, "every message acked or terminated")
    engine = sqlalchemy.create_engine(pipeline.postgres.url)
    try:
        with engine.connect() as connection:
            poison = connection.execute(sqlalchemy.select(dead_letters)).all()
    finally:
        engine.dispose()
    assert len(poison) == 1
    assert "not JSON" in poison[0].reason
    assert not any(i.endswith(("/900", "/901")) for i in stored_ids(pipeline, victim["uid"]))
    assert "pwned" not in json.dumps(tasks.status("victim"))
    assert "pwned" not in json.dumps(tasks.status("other"))
