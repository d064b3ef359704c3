"""A flood of rejected input does not grow the audit store without bound: a tenant publishes
thousands of forged events with its own runner's NATS credentials; they end as a handful of
counted security-event rows, every one of them counted, and another tenant's task still has
every event it published stored. Real operator, runner, nats-server with auth, Postgres."""

from __future__ import annotations

import asyncio
import base64

import pytest

from opspawn.api.events import (
    LogPayload,
    SigningKey,
    TaskRef,
    build_event,
    event_subject,
    sign_event,
)
from opspawn.operator.runner_job import NATS_CREDENTIALS_KEY
from tests.helpers import wait_for
from tests.integration.operator.conftest import Tasks
from tests.integration.operator.test_event_pipeline import Pipeline
from tests.security.test_consumer_attacks import (
    SCRIPT,
    _as_runner,
    all_events_stored,
    secret_of,
    task,
)

FLOOD = 3000


@pytest.mark.parametrize("pipeline", [SCRIPT], indirect=True)
def test_a_flood_of_forged_events_is_a_few_counted_rows(pipeline: Pipeline, tasks: Tasks) -> None:
    pipeline.operator()
    tasks.create(task("attacker"))
    wait_for(lambda: tasks.finished("attacker"), 120, "the attacker's own task to finish")
    attacker = tasks.get("attacker")["metadata"]
    credentials = base64.b64decode(secret_of(tasks, "attacker").data[NATS_CREDENTIALS_KEY])
    ref = TaskRef(
        task_uid=attacker["uid"], namespace=tasks.namespace, task_name="attacker", attempt=1
    )
    wrong_key = SigningKey(b"not-the-task-key-0123456789abcdef")
    forged = [
        (
            sign_event(
                build_event(ref, 1000 + n, LogPayload(message="junk")), wrong_key
            ).to_bytes(),
            None,
        )
        for n in range(FLOOD)
    ]

    asyncio.run(
        _as_runner(
            pipeline,
            credentials.decode(),
            attacker["uid"],
            forged,
            event_subject(tasks.namespace, attacker["uid"]),
        )
    )
    tasks.create(task("bystander"))

    def counted() -> list[tuple[str, int]] | None:
        with pipeline.audit() as audit:
            rows = audit.security_events(namespace=tasks.namespace, limit=None)
        found = [(row.reason, row.count) for row in rows]
        return found if sum(count for _, count in found) >= FLOOD else None

    rows = wait_for(counted, 120, "every forged event to be counted")
    assert {reason for reason, _ in rows} == {"VerificationFailed"}
    assert sum(count for _, count in rows) == FLOOD
    assert len(rows) <= 3  # one per minute the flood lasted, not one per message
    wait_for(lambda: tasks.finished("bystander"), 120, "the bystander to finish")
    wait_for(lambda: all_events_stored(pipeline, tasks, "bystander"), 60, "its events stored")
