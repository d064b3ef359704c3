"""The AgentTask lifecycle as a pure function: observation in, status and actions out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from opspawn.api import conditions
from opspawn.api.agenttask import AgentTaskStatus, Condition, ConditionStatus, Phase, ResultSummary
from opspawn.operator.lifecycle import (
    Decision,
    DeleteJob,
    DeleteTask,
    Launch,
    Notify,
    Observed,
    backoff_seconds,
    decide,
    launch_refused,
)
from opspawn.operator.outcome import AttemptOutcome, pod_creation_failed, runner_lost
from opspawn.operator.reconciler import status_patch
from opspawn.operator.runner_job import job_name
from opspawn.operator.views import JobView, TaskView
from tests.unit.operator.builders import NOW, TASK_NAME, TASK_UID, job, served, spec, task

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
JOB_1 = job_name(TASK_NAME, TASK_UID, 1)
JOB_2 = job_name(TASK_NAME, TASK_UID, 2)
TRANSIENT = AttemptOutcome(
    reason="ModelUnavailable", message="provider down", exit_code=75, retryable=True
)


def observe(view: TaskView, *, now: datetime = NOW, **fields: Any) -> Decision:
    return decide(Observed(task=view, now=now, **fields))


def written(view: TaskView, decision: Decision, **task_spec: Any) -> TaskView:
    """The task as the watch serves it once the operator wrote `decision`'s status (and the
    user changed `task_spec`, if given)."""
    new_spec = {**view.spec, **task_spec}
    generation = view.generation + (1 if task_spec else 0)
    return task(new_spec, served(decision.status), generation=generation)


def condition(status: AgentTaskStatus, kind: str) -> Condition:
    found = conditions.find(status.conditions, kind)
    assert found is not None, f"no {kind} condition in {status.conditions}"
    return found


def launches(decision: Decision) -> list[Launch]:
    return [action for action in decision.actions if isinstance(action, Launch)]


def notified(decision: Decision) -> list[str]:
    return [action.reason for action in decision.actions if isinstance(action, Notify)]


def launched(task_spec: dict[str, Any] | None = None) -> tuple[TaskView, Decision]:
    """A new task, admitted: attempt 1 is launched."""
    view = task(task_spec)
    decision = observe(view, admitted=True)
    return written(view, decision), decision


def running(task_spec: dict[str, Any] | None = None) -> TaskView:
    view, _ = launched(task_spec)
    return written(view, observe(view, job=job(1, ready=1)))


def failed_once(task_spec: dict[str, Any] | None = None) -> tuple[TaskView, Decision]:
    """Attempt 1 ended with a retryable failure (now backing off)."""
    view = running(task_spec)
    decision = observe(view, job=job(1, active=0), outcome=TRANSIENT)
    return written(view, decision), decision


# --------------------------------------------------------------------------- launch and queue


def test_an_admitted_new_task_launches_attempt_1_and_is_pending() -> None:
    decision = observe(task(), admitted=True)

    status = decision.status
    assert launches(decision) == [Launch(1)]
    assert notified(decision) == ["Launched"]
    assert decision.holds_slot
    assert not decision.wants_slot
    assert status.phase == Phase.PENDING
    assert (condition(status, "Queued").status, condition(status, "Queued").reason) == (
        FALSE,
        "Admitted",
    )
    assert condition(status, "Running").status == FALSE
    assert condition(status, "Running").reason == "JobCreated"
    assert condition(status, "Accepted").status == TRUE
    assert condition(status, "Succeeded").status == UNKNOWN
    assert status.attempt == 1
    assert status.job_name == JOB_1
    assert [(a.attempt, a.job_name, a.start_time) for a in status.attempts] == [
        (1, JOB_1, "2026-01-01T12:00:00Z")
    ]
    assert status.start_time == "2026-01-01T12:00:00Z"
    assert status.retries == 0


def test_a_new_task_without_a_slot_is_queued_with_its_position() -> None:
    decision = observe(task(), admitted=False, queue_position=3)

    status = decision.status
    assert decision.wants_slot
    assert not decision.holds_slot
    assert launches(decision) == []
    assert status.phase == Phase.QUEUED
    assert status.queue_position == 3
    queued = condition(status, "Queued")
    assert (queued.status, queued.reason) == (TRUE, "WaitingForCapacity")
    assert "position 3" in queued.message
    assert condition(status, "Running").status == FALSE
    assert status.attempt == 0


def test_a_queued_task_that_gets_a_slot_launches_and_drops_its_position() -> None:
    view = task()
    queued = written(view, observe(view, queue_position=0))

    decision = observe(queued, admitted=True)

    assert launches(decision) == [Launch(1)]
    assert decision.status.queue_position is None
    assert decision.status.phase == Phase.PENDING
    assert condition(decision.status, "Queued").status == FALSE


def test_conditions_record_the_generation_they_were_set_for() -> None:
    decision = observe(task(generation=4), admitted=True)

    assert decision.status.observed_generation == 4
    assert {c.observed_generation for c in decision.status.conditions} == {4}


def test_deciding_does_not_change_the_observed_task() -> None:
    view = task()
    before = served(view.status)

    observe(view, admitted=True)

    assert served(view.status) == before


# --------------------------------------------------------------------------- in flight


def test_an_attempt_whose_job_is_not_ready_yet_is_pending() -> None:
    view, _ = launched()

    decision = observe(view, job=job(1, active=1, ready=0))

    assert decision.status.phase == Phase.PENDING
    assert condition(decision.status, "Running").reason == "JobCreated"
    assert decision.holds_slot
    assert decision.actions == ()


def test_a_runner_pod_that_cannot_be_created_fails_the_task_as_not_accepted() -> None:
    view, _ = launched()
    missing = 'pods "x" is forbidden: error looking up service account team-a/robot: not found'

    decision = observe(view, job=job(1, active=0), outcome=pod_creation_failed(missing))

    assert decision.status.phase == Phase.FAILED
    accepted = condition(decision.status, "Accepted")
    assert (accepted.status, accepted.reason) == (FALSE, "FailedCreate")
    assert "service account team-a/robot" in accepted.message
    assert condition(decision.status, "Succeeded").reason == "FailedCreate"
    assert DeleteJob(JOB_1, "job-uid-1") in decision.actions  # nothing may start later
    assert decision.status.retries == 0
    assert not decision.holds_slot


def test_a_launch_refused_by_the_apiserver_ends_as_not_accepted_with_its_reason() -> None:
    new = task()
    admitted = observe(new, admitted=True)

    decision = launch_refused(
        Observed(task=new, now=NOW), admitted.status, "JobRefused", "spec.template: Invalid"
    )

    assert decision.status.phase == Phase.FAILED
    accepted = condition(decision.status, "Accepted")
    assert (accepted.status, accepted.reason, accepted.message) == (
        FALSE,
        "JobRefused",
        "spec.template: Invalid",
    )
    assert decision.status.attempts[-1].completion_time is not None
    assert decision.status.attempts[-1].reason == "JobRefused"
    assert "JobRefused" in notified(decision)
    assert not launches(decision)


def test_an_attempt_whose_job_is_ready_is_running() -> None:
    view, _ = launched()

    decision = observe(view, job=job(1, ready=1))

    assert decision.status.phase == Phase.RUNNING
    running_condition = condition(decision.status, "Running")
    assert (running_condition.status, running_condition.reason) == (TRUE, "RunnerStarted")
    assert JOB_1 in running_condition.message
    assert condition(decision.status, "Queued").status == FALSE
    assert decision.holds_slot
    assert launches(decision) == []


def test_a_running_task_stays_running_while_its_pod_stops_being_ready() -> None:
    decision = observe(running(), job=job(1, active=1, ready=0))

    assert decision.status.phase == Phase.RUNNING
    assert condition(decision.status, "Running").status == TRUE


def test_a_job_suspended_by_an_external_queue_shows_the_task_as_queued() -> None:
    view, _ = launched()

    decision = observe(view, job=job(1, active=0, suspend=True))

    assert decision.status.phase == Phase.QUEUED
    queued = condition(decision.status, "Queued")
    assert (queued.status, queued.reason) == (TRUE, "JobSuspended")
    assert decision.holds_slot


# --------------------------------------------------------------------------- retries


def test_a_retryable_failure_with_retries_left_backs_off_before_the_next_attempt() -> None:
    view = running()

    decision = observe(view, job=job(1, active=0), outcome=TRANSIENT)

    status = decision.status
    assert status.retries == 1
    assert launches(decision) == []
    assert decision.requeue_at == NOW + timedelta(seconds=10)
    assert not decision.wants_slot
    assert not decision.holds_slot
    assert status.phase == Phase.PENDING
    assert condition(status, "Queued").reason == "BackingOff"
    assert condition(status, "Running").status == FALSE
    assert condition(status, "Succeeded").status == UNKNOWN
    record = status.attempts[-1]
    assert (record.attempt, record.reason, record.exit_code) == (1, "ModelUnavailable", 75)
    assert record.completion_time == "2026-01-01T12:00:00Z"
    assert notified(decision) == ["Retrying"]
    retrying = next(a for a in decision.actions if isinstance(a, Notify))
    assert retrying.warning
    assert "ModelUnavailable" in retrying.message


def test_no_attempt_starts_before_the_backoff_ran_out_even_with_a_free_slot() -> None:
    view, _ = failed_once()

    decision = observe(view, now=NOW + timedelta(seconds=9), admitted=True)

    assert launches(decision) == []
    assert decision.requeue_at == NOW + timedelta(seconds=10)
    assert condition(decision.status, "Queued").reason == "BackingOff"


def test_after_the_backoff_the_task_queues_then_launches_the_next_attempt() -> None:
    view, _ = failed_once()
    later = NOW + timedelta(seconds=10)

    waiting = observe(view, now=later, queue_position=0)
    decision = observe(view, now=later, admitted=True)

    assert waiting.wants_slot
    assert waiting.status.phase == Phase.QUEUED
    assert launches(decision) == [Launch(2)]
    assert decision.status.attempt == 2
    assert decision.status.job_name == JOB_2
    assert decision.status.retries == 1
    assert [a.attempt for a in decision.status.attempts] == [1, 2]


def test_the_backoff_doubles_with_each_retry() -> None:
    view, _ = failed_once()
    second_start = NOW + timedelta(seconds=10)
    view = written(view, observe(view, now=second_start, admitted=True))
    second_end = second_start + timedelta(minutes=1)

    decision = observe(view, now=second_end, job=job(2, active=0), outcome=TRANSIENT)

    assert decision.status.retries == 2
    assert decision.requeue_at == second_end + timedelta(seconds=20)


def test_exhausted_retries_fail_the_task_with_backoff_limit_exceeded() -> None:
    view = running(spec(retry={"limit": 1}))
    view = written(view, observe(view, job=job(1, active=0), outcome=TRANSIENT))
    view = written(view, observe(view, now=NOW + timedelta(minutes=5), admitted=True))

    decision = observe(
        view, now=NOW + timedelta(minutes=6), job=job(2, active=0), outcome=TRANSIENT
    )

    status = decision.status
    assert status.phase == Phase.FAILED
    succeeded = condition(status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (FALSE, "BackoffLimitExceeded")
    assert "retry limit 1 reached" in succeeded.message
    assert status.retries == 1
    assert status.completion_time == "2026-01-01T12:06:00Z"
    assert launches(decision) == []
    assert decision.requeue_at is None
    assert not decision.holds_slot
    assert not decision.wants_slot


def test_with_retry_limit_0_the_first_retryable_failure_is_final() -> None:
    view = running(spec(retry={"limit": 0}))

    decision = observe(view, job=job(1, active=0), outcome=runner_lost("gone"))

    assert decision.status.phase == Phase.FAILED
    assert condition(decision.status, "Succeeded").reason == "BackoffLimitExceeded"
    assert decision.status.retries == 0


def test_a_final_failure_fails_the_task_with_the_runners_stop_reason() -> None:
    outcome = AttemptOutcome(reason="Stalled", message="same tool call 3 times", exit_code=1)

    decision = observe(running(), job=job(1, active=0), outcome=outcome)

    assert decision.status.phase == Phase.FAILED
    succeeded = condition(decision.status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (FALSE, "Stalled")
    assert "same tool call 3 times" in succeeded.message
    assert decision.status.retries == 0
    assert decision.status.attempts[-1].reason == "Stalled"
    assert any(isinstance(a, Notify) and a.warning for a in decision.actions)


def test_a_timed_out_attempt_ends_the_task_as_timed_out() -> None:
    outcome = AttemptOutcome(reason="TimedOut", message="ran past its deadline")

    decision = observe(running(), job=job(1, active=0), outcome=outcome)

    assert decision.status.phase == Phase.TIMED_OUT
    succeeded = condition(decision.status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (FALSE, "TimedOut")
    assert decision.status.retries == 0
    assert launches(decision) == []


def test_a_completed_attempt_succeeds_with_its_result() -> None:
    result = ResultSummary(preview="Three changes.", size_bytes=14, sha256="ab" * 32)
    outcome = AttemptOutcome(reason="Completed", exit_code=0, result=result)

    decision = observe(running(), job=job(1, active=0, complete=True), outcome=outcome)

    status = decision.status
    assert status.phase == Phase.SUCCEEDED
    succeeded = condition(status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (TRUE, "Completed")
    assert status.result == result
    assert status.completion_time == "2026-01-01T12:00:00Z"
    assert condition(status, "Running").status == FALSE
    assert status.attempts[-1].reason == "Completed"
    assert not decision.holds_slot
    assert notified(decision) == ["Completed"]


def test_a_failed_attempts_partial_result_is_kept() -> None:
    partial = ResultSummary(preview="Half of it", size_bytes=10)
    outcome = AttemptOutcome(
        reason="MaxStepsReached", message="20 steps", exit_code=3, result=partial
    )

    decision = observe(running(), job=job(1, active=0), outcome=outcome)

    assert decision.status.result == partial


# --------------------------------------------------------------------------- cancel


def test_cancelling_a_running_task_deletes_its_job() -> None:
    run = running()
    view = task(spec(cancel=True), served(run.status), generation=2)

    decision = observe(view, job=job(1, ready=1))

    assert DeleteJob(JOB_1, "job-uid-1") in decision.actions
    assert decision.status.phase == Phase.CANCELLED
    succeeded = condition(decision.status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (FALSE, "Cancelled")
    assert decision.status.attempts[-1].reason == "Cancelled"
    assert decision.status.attempts[-1].completion_time == "2026-01-01T12:00:00Z"
    assert condition(decision.status, "Running").status == FALSE
    assert not decision.holds_slot


def test_cancelling_a_queued_task_needs_no_job_deletion() -> None:
    view = task()
    queued = written(view, observe(view, queue_position=2), cancel=True)

    decision = observe(queued, admitted=True)

    assert decision.status.phase == Phase.CANCELLED
    assert decision.status.queue_position is None
    assert not any(isinstance(a, Launch | DeleteJob) for a in decision.actions)
    assert not decision.wants_slot


def test_cancelling_after_the_job_finished_deletes_nothing() -> None:
    backing_off, _ = failed_once()
    view = task(spec(cancel=True), served(backing_off.status), generation=2)

    decision = observe(view, job=job(1, active=0, failed=("BackoffLimitExceeded", "")))

    assert decision.status.phase == Phase.CANCELLED
    assert not any(isinstance(a, DeleteJob) for a in decision.actions)


# --------------------------------------------------------------------------- suspend


def test_suspending_a_running_attempt_stops_it_and_closes_the_attempt() -> None:
    view = running()
    suspended = task(spec(suspend=True), served(view.status), generation=2)

    decision = observe(suspended, job=job(1, ready=1))

    assert DeleteJob(JOB_1, "job-uid-1") in decision.actions
    assert notified(decision) == ["Suspended"]
    status = decision.status
    assert status.phase == Phase.PENDING
    assert (status.attempts[-1].reason, status.attempts[-1].completion_time) == (
        "Suspended",
        "2026-01-01T12:00:00Z",
    )
    assert condition(status, "Queued").status == FALSE
    assert condition(status, "Queued").reason == "Suspended"
    assert condition(status, "Running").status == FALSE
    assert condition(status, "Succeeded").status == UNKNOWN
    assert status.retries == 0
    assert not decision.holds_slot
    assert not decision.wants_slot


def test_resuming_starts_a_new_attempt_that_is_not_a_retry() -> None:
    view = running(spec(retry={"limit": 0}))
    view = task(spec(retry={"limit": 0}, suspend=True), served(view.status), generation=2)
    view = written(view, observe(view, job=job(1, ready=1)))
    resumed = task(spec(retry={"limit": 0}), served(view.status), generation=3)
    later = NOW + timedelta(seconds=1)

    waiting = observe(resumed, now=later, job=job(1, deleting=True))
    decision = observe(resumed, now=later, job=job(1, deleting=True), admitted=True)

    assert waiting.wants_slot
    assert waiting.requeue_at is None
    assert launches(decision) == [Launch(2)]
    assert decision.status.attempt == 2
    assert decision.status.retries == 0
    assert decision.status.phase == Phase.PENDING
    assert condition(decision.status, "Succeeded").status == UNKNOWN


def test_a_suspended_task_that_never_started_waits_without_a_slot() -> None:
    decision = observe(task(spec(suspend=True)), admitted=True)

    assert decision.status.phase == Phase.PENDING
    assert condition(decision.status, "Queued").reason == "Suspended"
    assert not decision.wants_slot
    assert not decision.holds_slot
    assert decision.actions == ()


# --------------------------------------------------------------------------- finished tasks


def finished(task_spec: dict[str, Any] | None = None) -> TaskView:
    """A task whose attempt 1 completed at NOW."""
    view = running(task_spec)
    outcome = AttemptOutcome(reason="Completed", exit_code=0)
    return written(view, observe(view, job=job(1, active=0, complete=True), outcome=outcome))


@pytest.mark.parametrize(
    "fields",
    [
        {"admitted": True},
        {"job": job(1, active=0, failed=("BackoffLimitExceeded", ""))},
        {"outcome": TRANSIENT},
        {"outcome": AttemptOutcome(reason="Stalled", exit_code=1)},
        {"job": job(2, ready=1)},
        {"secret_problem": "Secret openai has no key api-key"},
    ],
    ids=["admitted", "failed-job", "retryable-outcome", "failed-outcome", "newer-job", "secret"],
)
def test_a_finished_task_never_changes_its_outcome(fields: dict[str, Any]) -> None:
    view = finished()

    decision = observe(view, now=NOW + timedelta(hours=1), **fields)

    assert decision.actions == ()
    assert decision.status == view.status
    assert not decision.holds_slot
    assert not decision.wants_slot


def test_a_finished_task_ignores_a_later_cancel_or_suspend() -> None:
    view = finished()
    changed = task(spec(cancel=True, suspend=True), served(view.status), generation=2)

    decision = observe(changed, now=NOW + timedelta(hours=1), job=job(1, active=0))

    assert decision.actions == ()
    assert decision.status.phase == Phase.SUCCEEDED
    assert condition(decision.status, "Succeeded").status == TRUE


def test_a_finished_task_with_a_status_field_it_does_not_know_is_not_launched_again() -> None:
    # E.g. a newer CRD and operator wrote a status field, then the operator was rolled back.
    view = finished()
    status = {**served(view.status), "lastHeartbeat": "2026-01-01T12:00:00Z"}

    decision = observe(task(dict(view.spec), status), admitted=True)

    assert launches(decision) == []
    assert decision.status.phase == Phase.SUCCEEDED


# --------------------------------------------------------------------------- TTL


def test_a_finished_task_with_a_ttl_is_decided_again_when_it_runs_out() -> None:
    view = finished(spec(ttlSecondsAfterFinished=60))

    decision = observe(view, now=NOW + timedelta(seconds=30))

    assert decision.actions == ()
    assert decision.requeue_at == NOW + timedelta(seconds=60)


def test_a_finished_task_is_deleted_once_its_ttl_ran_out() -> None:
    view = finished(spec(ttlSecondsAfterFinished=60))

    decision = observe(view, now=NOW + timedelta(seconds=60))

    assert decision.actions == (DeleteTask(),)


def test_the_ttl_counts_from_the_completion_time() -> None:
    view = running(spec(ttlSecondsAfterFinished=60))
    outcome = AttemptOutcome(reason="Completed", exit_code=0)
    done_at = NOW + timedelta(minutes=10)

    decision = observe(view, now=done_at, job=job(1, active=0, complete=True), outcome=outcome)

    assert decision.requeue_at == done_at + timedelta(seconds=60)
    assert not any(isinstance(a, DeleteTask) for a in decision.actions)


def test_a_ttl_of_zero_deletes_the_task_as_it_finishes() -> None:
    view = running(spec(ttlSecondsAfterFinished=0))
    outcome = AttemptOutcome(reason="Completed", exit_code=0)

    decision = observe(view, job=job(1, active=0, complete=True), outcome=outcome)

    assert decision.status.phase == Phase.SUCCEEDED
    assert DeleteTask() in decision.actions
    assert notified(decision) == ["Completed"]


def test_a_finished_task_without_a_ttl_is_kept() -> None:
    decision = observe(finished(), now=NOW + timedelta(days=365))

    assert decision.actions == ()
    assert decision.requeue_at is None


# --------------------------------------------------------------------------- refusals


def test_an_invalid_spec_fails_the_task_naming_the_field() -> None:
    bad = spec(limits={"maxSteps": 0})

    decision = observe(task(bad), admitted=True)

    status = decision.status
    assert status.phase == Phase.FAILED
    accepted = condition(status, "Accepted")
    assert (accepted.status, accepted.reason) == (FALSE, "InvalidSpec")
    assert "spec.limits.maxSteps" in accepted.message
    succeeded = condition(status, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (FALSE, "InvalidSpec")
    assert "spec.limits.maxSteps" in succeeded.message
    assert launches(decision) == []
    assert not decision.holds_slot
    assert not decision.wants_slot


def test_a_spec_without_a_model_is_invalid_naming_the_model() -> None:
    bad = spec()
    del bad["model"]

    decision = observe(task(bad))

    assert condition(decision.status, "Accepted").reason == "InvalidSpec"
    assert "spec.model: Field required" in condition(decision.status, "Accepted").message


def test_a_missing_secret_fails_an_admitted_task_instead_of_launching() -> None:
    problem = "Secret team-a/openai not found"

    decision = observe(task(), admitted=True, secret_problem=problem)

    status = decision.status
    assert launches(decision) == []
    assert status.phase == Phase.FAILED
    accepted = condition(status, "Accepted")
    assert (accepted.status, accepted.reason, accepted.message) == (
        FALSE,
        "SecretNotFound",
        problem,
    )
    assert condition(status, "Succeeded").reason == "SecretNotFound"
    assert not decision.holds_slot


def test_a_secret_problem_is_not_acted_on_before_admission() -> None:
    decision = observe(task(), admitted=False, queue_position=0, secret_problem="not found")

    assert decision.wants_slot
    assert decision.status.phase == Phase.QUEUED
    assert condition(decision.status, "Accepted").status == TRUE


# --------------------------------------------------------------------------- adoption


def test_a_job_newer_than_the_status_is_adopted_instead_of_launching_again() -> None:
    orphan = job(1, active=1, created="2026-01-01T11:59:30Z")

    decision = observe(task(), job=orphan, admitted=True)

    assert launches(decision) == []
    assert decision.holds_slot
    status = decision.status
    assert (status.attempt, status.job_name) == (1, JOB_1)
    assert [(a.attempt, a.job_name, a.start_time) for a in status.attempts] == [
        (1, JOB_1, "2026-01-01T11:59:30Z")
    ]
    assert status.start_time == "2026-01-01T11:59:30Z"


def test_an_adopted_job_that_runs_makes_the_task_running() -> None:
    decision = observe(task(), job=job(1, ready=1))

    assert decision.status.phase == Phase.RUNNING
    assert decision.holds_slot


def test_an_adopted_job_of_a_later_attempt_follows_the_earlier_ones() -> None:
    view, _ = failed_once()

    decision = observe(view, now=NOW + timedelta(seconds=11), job=job(2, ready=1))

    assert launches(decision) == []
    assert decision.status.attempt == 2
    assert [a.attempt for a in decision.status.attempts] == [1, 2]
    assert decision.status.phase == Phase.RUNNING


# --------------------------------------------------------------------------- idempotency


def _stages() -> dict[str, tuple[TaskView, dict[str, Any]]]:
    """(task as written after a decision, what the next reconcile observes) per stage."""
    view = task()
    queued = written(view, observe(view, queue_position=1))
    start, _ = launched()
    run = running()
    backing_off, _ = failed_once()
    stopped = task(spec(suspend=True), served(run.status), generation=2)
    stopped = written(stopped, observe(stopped, job=job(1, ready=1)))
    return {
        "queued": (queued, {"queue_position": 1}),
        "launched": (start, {}),
        "running": (run, {"job": job(1, ready=1)}),
        "backing-off": (backing_off, {"job": job(1, active=0, failed=("Failed", ""))}),
        "suspended": (stopped, {"job": job(1, deleting=True)}),
        "finished": (finished(), {}),
    }


@pytest.mark.parametrize(
    "stage",
    [
        "queued",
        "launched",
        "running",
        "backing-off",
        "suspended",
        "finished",
    ],
)
def test_deciding_again_on_its_own_status_changes_nothing(stage: str) -> None:
    view, fields = _stages()[stage]

    decision = observe(view, now=NOW + timedelta(seconds=1), **fields)

    assert decision.actions == ()
    assert status_patch(view.raw_status, decision.status) == {}


def test_a_launch_is_not_repeated_while_the_job_is_not_visible_yet() -> None:
    view, first = launched()

    again = observe(view, admitted=True)

    assert launches(first) == [Launch(1)]
    assert launches(again) == []
    assert again.holds_slot


def test_the_same_observation_gives_the_same_decision() -> None:
    view = running()
    observed = Observed(task=view, now=NOW, job=job(1, active=0), outcome=TRANSIENT)

    assert decide(observed) == decide(observed)


# --------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("retry", "seconds"),
    [(0, 10), (1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (60, 300)],
)
def test_backoff_doubles_from_the_initial_delay_up_to_the_maximum(retry: int, seconds: int) -> None:
    assert backoff_seconds(10, 300, retry) == seconds


def test_a_job_view_reads_the_kubernetes_job() -> None:
    view = JobView.from_body(
        {
            "metadata": {
                "name": JOB_1,
                "namespace": "team-a",
                "labels": {"opspawn.io/task-uid": TASK_UID, "opspawn.io/attempt": "not-a-number"},
            },
            "status": {"conditions": [{"type": "Failed", "status": "False", "reason": "X"}]},
        }
    )

    assert (view.attempt, view.ready) == (0, 0)
    assert not view.failed
    assert not view.finished


# --------------------------------------------------------------------------- stalled


STALL = timedelta(minutes=5)


def test_a_running_task_silent_past_the_threshold_is_stalled_and_recovers() -> None:
    view = running()
    quiet = observe(
        view, now=NOW + STALL - timedelta(seconds=1), job=job(1, ready=1), stall_after=STALL
    )
    assert conditions.find(quiet.status.conditions, conditions.STALLED) is None
    assert quiet.requeue_at == NOW + STALL

    stalled = observe(view, now=NOW + STALL, job=job(1, ready=1), stall_after=STALL)
    assert condition(stalled.status, "Stalled").status == TRUE
    assert "Stalled" in notified(stalled)

    resumed_status = served(written(view, stalled).status)
    resumed_status["lastEvent"] = {
        "type": "step",
        "sequence": 9,
        "time": "2026-01-01T12:06:00Z",
        "summary": "step 2",
    }
    resumed = observe(
        task(dict(view.spec), resumed_status),
        now=NOW + STALL + timedelta(seconds=2),
        job=job(1, ready=1),
        stall_after=STALL,
    )
    assert condition(resumed.status, "Stalled").status == FALSE
    assert condition(resumed.status, "Stalled").reason == "EventsResumed"


def test_without_a_threshold_a_silent_task_is_never_stalled() -> None:
    decision = observe(running(), now=NOW + timedelta(days=1), job=job(1, ready=1))

    assert conditions.find(decision.status.conditions, conditions.STALLED) is None
    assert decision.requeue_at is None
