"""A complete audit trail whatever happens around it: an attempt that finished while Postgres
was away is recorded with its final phase once Postgres is back, and a task deleted while its
runner still publishes closes its attempt without raising false security events.

Real runner, real NATS, real Postgres (of the test's own, so it can be stopped).
"""

from __future__ import annotations

import time

from opspawn.operator.audit import TaskRecord
from tests.helpers import wait_for
from tests.integration.operator import test_event_pipeline as event_pipeline
from tests.integration.operator.conftest import Tasks
from tests.integration.operator.test_event_pipeline import STEPS, Pipeline, finish, task

pipeline = event_pipeline.pipeline  # the fixture: NATS and Postgres of the test's own


def _attempts(pipeline: Pipeline, uid: str) -> list[TaskRecord]:
    with pipeline.audit() as audit:
        return audit.attempts(uid)


def test_an_attempt_that_finished_during_a_30s_outage_is_recorded_as_finished(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    pipeline.operator()
    tasks.create(task("finished-offline"))
    uid = tasks.get("finished-offline")["metadata"]["uid"]
    wait_for(lambda: tasks.status("finished-offline").get("steps", 0) >= 1, 60, "a first step")

    pipeline.postgres.pause()
    paused_at = time.monotonic()
    assert finish(tasks, "finished-offline")["reason"] == "Completed"
    wait_for(lambda: time.monotonic() - paused_at >= 30, 40, "30 seconds of outage")
    pipeline.postgres.start()

    def recorded() -> TaskRecord | None:
        attempts = _attempts(pipeline, uid)
        return attempts[0] if attempts and attempts[0].phase == "Succeeded" else None

    attempt = wait_for(recorded, 60, "the final phase in the audit store")
    assert attempt.reason == "Completed"
    assert attempt.finished_at is not None
    assert attempt.steps == STEPS + 1


def test_a_task_deleted_mid_run_closes_its_attempt_and_its_late_events_are_no_attack(
    pipeline: Pipeline, tasks: Tasks
) -> None:
    pipeline.operator()
    tasks.create(task("deleted"))
    uid = tasks.get("deleted")["metadata"]["uid"]
    wait_for(lambda: tasks.status("deleted").get("steps", 0) >= 2, 60, "a few steps")
    wait_for(lambda: _attempts(pipeline, uid), 30, "the attempt in the audit store")

    tasks.custom.delete_namespaced_custom_object(
        "opspawn.io", "v1alpha1", tasks.namespace, "agenttasks", "deleted"
    )

    def closed() -> TaskRecord | None:
        attempts = _attempts(pipeline, uid)
        return attempts[0] if attempts and attempts[0].phase == "Cancelled" else None

    attempt = wait_for(closed, 60, "the deleted task's attempt to be closed")
    assert attempt.reason == "TaskDeleted"
    assert attempt.finished_at is not None
    # The runner goes with its Job (SIGTERM) and flushes; none of that is a forgery.
    wait_for(lambda: not tasks.running_pods(), 60, "the runner to stop")
    with pipeline.audit() as audit:
        assert audit.security_events(task_uid=uid) == []

    tasks.create(task("after"))  # and the operator goes on serving
    assert finish(tasks, "after")["reason"] == "Completed"
    with pipeline.audit() as audit:
        assert audit.security_events(task_uid=uid) == []
