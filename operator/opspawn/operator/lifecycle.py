"""The AgentTask lifecycle as a pure function: what the operator observed → what it should do.

`decide` is level-based: it looks at the task (spec and status), the Job of its current attempt
(or the fact that the Job is gone) and the admission verdict, and returns the whole status the
task should have plus the actions that get the cluster there. Calling it twice on the same
observation gives the same answer, and every action is idempotent (deterministic names, 409
adopts, 404 on delete is done), so a restarted operator simply decides again.

Conditions (Kubernetes API conventions; `Succeeded` is monotonic once True or False):

- `Accepted`  True once the spec is valid and its Secrets exist; False with InvalidSpec,
  SecretNotFound, or why the runner could not be started as the spec says: the apiserver
  refused its Job or Secret (JobRefused, SecretRefused), an object not the task's holds a
  per-task name (NameConflict), the per-task Secret was edited (RunnerSecretModified), the Job
  controller cannot create the Pod (FailedCreate) or its image cannot be pulled
  (ImagePullBackOff, InvalidImageName …).
- `Queued`    True while waiting for a concurrency slot (WaitingForCapacity) or for an external
  queue such as Kueue (JobSuspended); False once admitted, while suspended or backing off.
- `Running`   True while the runner Pod runs; False otherwise (JobCreated, Suspended, Finished …).
- `Stalled`   True while a running task's runner has been silent longer than the operator's
  stall threshold (only with the event pipeline on); False once it reports again or finishes.
- `Succeeded` Unknown while in flight; True (Completed) or False (Failed, TimedOut, Cancelled,
  BackoffLimitExceeded, SecretNotFound, InvalidSpec, or the runner's stop reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from opspawn.api import conditions
from opspawn.api.agenttask import (
    ATTEMPTS_HISTORY_MAX,
    AgentTaskSpec,
    AgentTaskStatus,
    AttemptRecord,
    ConditionStatus,
    Phase,
)
from opspawn.operator.outcome import AttemptOutcome
from opspawn.operator.runner_job import job_name
from opspawn.operator.views import JobView, TaskView

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

SUSPENDED = "Suspended"
CANCELLED = "Cancelled"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 (a reason, not a secret)
INVALID_SPEC = "InvalidSpec"
SUSPEND_MESSAGE = "spec.suspend is true"


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Launch:
    """Create the per-task Secret and the Job of `attempt`."""

    attempt: int


@dataclass(frozen=True)
class DeleteJob:
    """Delete the task's Job `name`, only if it is still the one of `uid`."""

    name: str
    uid: str


@dataclass(frozen=True)
class DeleteTask:
    """The task's TTL after finishing ran out (its children go by ownerReferences)."""


@dataclass(frozen=True)
class Notify:
    """A Kubernetes Event on the task."""

    reason: str
    message: str
    warning: bool = False


Action = Launch | DeleteJob | DeleteTask | Notify


@dataclass(frozen=True)
class Observed:
    """Everything `decide` looks at."""

    task: TaskView
    now: datetime
    job: JobView | None = None
    """The Job of the task's current attempt, when it exists."""
    outcome: AttemptOutcome | None = None
    """How the current attempt ended, once its Job finished or disappeared."""
    admitted: bool = False
    """The admission queue gave this task a slot."""
    queue_position: int | None = None
    secret_problem: str | None = None
    """Why a Secret the task references is unusable (checked when the task is admitted)."""
    stall_after: timedelta | None = None
    """A running task silent this long (no runner event) gets `Stalled`; None: never."""


@dataclass(frozen=True)
class Decision:
    status: AgentTaskStatus
    actions: tuple[Action, ...] = ()
    wants_slot: bool = False
    """Waiting for admission."""
    holds_slot: bool = False
    """Has (or is about to get) a live runner Job."""
    requeue_at: datetime | None = None
    """Decide again at this time (retry backoff, TTL)."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def backoff_seconds(initial: int, maximum: int, retry: int) -> int:
    """Delay before retry number `retry` (from 1): doubling from `initial`, capped."""
    return int(min(maximum, initial * 2 ** max(0, retry - 1)))


# --------------------------------------------------------------------------- decide


@dataclass
class _Draft:
    """The status being decided, with helpers that keep conditions consistent."""

    status: AgentTaskStatus
    now: str
    generation: int
    actions: list[Action] = field(default_factory=list)

    def condition(self, kind: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = conditions.set_condition(
            self.status.conditions,
            kind,
            status,
            reason,
            message,
            now=self.now,
            observed_generation=self.generation,
        )

    def waiting(self, phase: Phase, queued: ConditionStatus, reason: str, message: str) -> None:
        self.status.phase = phase
        self.condition(conditions.QUEUED, queued, reason, message)
        self.condition(conditions.RUNNING, FALSE, reason, message)

    def finish(self, phase: Phase, reason: str, message: str) -> None:
        succeeded = phase == Phase.SUCCEEDED
        self.status.phase = phase
        self.status.completion_time = self.now
        self.status.queue_position = None
        self.condition(conditions.QUEUED, FALSE, "Finished", "the task has finished")
        self.condition(conditions.RUNNING, FALSE, "Finished", "the task has finished")
        self.condition(conditions.SUCCEEDED, TRUE if succeeded else FALSE, reason, message)
        stalled = conditions.find(self.status.conditions, conditions.STALLED)
        if stalled is not None and stalled.status == TRUE:
            self.condition(conditions.STALLED, FALSE, "Finished", "the task has finished")
        self.actions.append(Notify(reason, message or reason, warning=not succeeded))

    def close_attempt(self, reason: str, exit_code: int | None = None) -> None:
        record = self.current_record()
        if record is not None and record.completion_time is None:
            record.completion_time = self.now
            record.reason = reason[:128]
            record.exit_code = exit_code

    def current_record(self) -> AttemptRecord | None:
        records = self.status.attempts
        if records and records[-1].attempt == self.status.attempt:
            return records[-1]
        return None

    def open_attempt(self, attempt: int, name: str, start_time: str) -> None:
        self.status.attempt = attempt
        self.status.job_name = name
        self.status.attempts = [
            *self.status.attempts,
            AttemptRecord(attempt=attempt, job_name=name, start_time=start_time),
        ][-ATTEMPTS_HISTORY_MAX:]
        if self.status.start_time is None:
            self.status.start_time = start_time


def decide(observed: Observed) -> Decision:
    task = observed.task
    draft = _Draft(
        status=task.status.model_copy(deep=True),
        now=rfc3339(observed.now),
        generation=task.generation,
    )
    draft.status.observed_generation = task.generation
    if task.finished:
        return _finished(observed, draft)
    try:
        spec = AgentTaskSpec.model_validate_json(task.spec_json)
    except ValidationError as error:
        message = _validation_message(error)
        draft.condition(conditions.ACCEPTED, FALSE, INVALID_SPEC, message)
        draft.close_attempt(INVALID_SPEC)
        draft.finish(Phase.FAILED, INVALID_SPEC, message)
        return _done(draft, observed)
    if draft.status.phase is None:
        draft.status.phase = Phase.PENDING
    if conditions.find(draft.status.conditions, conditions.ACCEPTED) is None:
        draft.condition(conditions.ACCEPTED, TRUE, "Valid", "the spec is valid")
        draft.condition(conditions.SUCCEEDED, UNKNOWN, "InProgress", "the task has not finished")
    job = observed.job
    if job is not None and job.attempt > draft.status.attempt:
        # A Job this operator created before it could record it (it was restarted): adopt it.
        draft.open_attempt(job.attempt, job.name, job.creation_timestamp or draft.now)
    record = draft.current_record()
    attempt_open = record is not None and record.completion_time is None

    if task.cancelled:
        if job is not None and not job.finished and not job.deleting:
            draft.actions.append(DeleteJob(job.name, job.uid))
        draft.close_attempt(CANCELLED)
        draft.finish(Phase.CANCELLED, CANCELLED, "cancelled by spec.cancel")
        return _done(draft, observed)

    if attempt_open and observed.outcome is None:
        return _in_flight(observed, draft, job)
    if attempt_open and observed.outcome is not None:
        if job is not None and not job.finished and not job.deleting:
            # Ended before its Job did (its Pod cannot start): nothing may run on later.
            draft.actions.append(DeleteJob(job.name, job.uid))
        if observed.outcome.spec_problem:
            draft.condition(
                conditions.ACCEPTED, FALSE, observed.outcome.reason, observed.outcome.message
            )
        retry = _attempt_ended(draft, spec, observed.outcome)
        if not retry:
            return _done(draft, observed)
    return _waiting(observed, draft, spec)


def _in_flight(observed: Observed, draft: _Draft, job: JobView | None) -> Decision:
    """The current attempt's Job exists and has not finished."""
    if observed.task.suspended:
        if job is not None and not job.deleting:
            draft.actions.append(DeleteJob(job.name, job.uid))
        draft.close_attempt(SUSPENDED)
        draft.waiting(Phase.PENDING, FALSE, SUSPENDED, SUSPEND_MESSAGE)
        draft.actions.append(
            Notify(SUSPENDED, f"spec.suspend is true: attempt {draft.status.attempt} was stopped")
        )
        return Decision(draft.status, tuple(draft.actions))
    draft.status.queue_position = None
    if job is not None and job.suspended:
        draft.waiting(
            Phase.QUEUED, TRUE, "JobSuspended", f"Job {job.name} is suspended (e.g. by Kueue)"
        )
    elif (job is not None and job.ready > 0) or draft.status.phase == Phase.RUNNING:
        # Once Running, stay so until the Job has finished (its Pod stops being ready first).
        draft.status.phase = Phase.RUNNING
        draft.condition(conditions.QUEUED, FALSE, "Admitted", "the task was admitted")
        draft.condition(
            conditions.RUNNING, TRUE, "RunnerStarted", f"Job {draft.status.job_name} is running"
        )
        recheck = _stall_check(observed, draft)
        return Decision(draft.status, tuple(draft.actions), holds_slot=True, requeue_at=recheck)
    else:
        draft.status.phase = Phase.PENDING
        draft.condition(conditions.QUEUED, FALSE, "Admitted", "the task was admitted")
        draft.condition(
            conditions.RUNNING, FALSE, "JobCreated", f"waiting for Job {draft.status.job_name}"
        )
    return Decision(draft.status, tuple(draft.actions), holds_slot=True)


def _stall_check(observed: Observed, draft: _Draft) -> datetime | None:
    """Set `Stalled` when the runner has been silent too long; when to look again."""
    if observed.stall_after is None:
        return None
    record = draft.current_record()
    last_event = draft.status.last_event
    moments = [
        parse_time(last_event.time if last_event else None),
        parse_time(record.start_time if record else None),
    ]
    known = [moment for moment in moments if moment is not None]
    if not known:
        return None
    due = max(known) + observed.stall_after
    stalled = conditions.find(draft.status.conditions, conditions.STALLED)
    if observed.now >= due:
        seconds = int(observed.stall_after.total_seconds())
        if stalled is None or stalled.status != TRUE:
            draft.actions.append(Notify("Stalled", f"no runner event for {seconds}s", True))
        draft.condition(
            conditions.STALLED, TRUE, "NoEvents", f"no runner event for more than {seconds}s"
        )
        return None
    if stalled is not None and stalled.status == TRUE:
        draft.condition(conditions.STALLED, FALSE, "EventsResumed", "the runner reports again")
    return due


def _attempt_ended(draft: _Draft, spec: AgentTaskSpec, outcome: AttemptOutcome) -> bool:
    """Record how the attempt ended; True when another attempt follows."""
    attempt = draft.status.attempt
    draft.close_attempt(outcome.reason, outcome.exit_code)
    known = draft.status.result
    if (
        outcome.result is not None
        and (outcome.succeeded or outcome.result.size_bytes > 0)
        and (known is None or known.sha256 != outcome.result.sha256)
    ):
        # The termination message's preview: the final answer, or a failed attempt's partial
        # one; unless the event mirror already showed this very result (with a longer preview).
        draft.status.result = outcome.result
    if outcome.succeeded:
        draft.finish(Phase.SUCCEEDED, "Completed", f"attempt {attempt} completed")
        return False
    detail = f"attempt {attempt}: {outcome.reason}: {outcome.message}".rstrip(": ")
    if outcome.retryable:
        if draft.status.retries < spec.retry.limit:
            draft.status.retries += 1
            draft.actions.append(Notify("Retrying", detail, warning=True))
            return True
        message = f"{detail}; retry limit {spec.retry.limit} reached"
        draft.finish(Phase.FAILED, BACKOFF_LIMIT_EXCEEDED, message)
        return False
    if outcome.timed_out:
        draft.finish(Phase.TIMED_OUT, "TimedOut", detail)
    else:
        draft.finish(Phase.FAILED, outcome.reason, detail)
    return False


def _waiting(observed: Observed, draft: _Draft, spec: AgentTaskSpec) -> Decision:
    """No attempt in flight: suspended, backing off, queued, or launching the next attempt."""
    if observed.task.suspended:
        draft.status.queue_position = None
        draft.waiting(Phase.PENDING, FALSE, SUSPENDED, SUSPEND_MESSAGE)
        return Decision(draft.status, tuple(draft.actions))
    retry_at = _retry_at(draft.status, spec)
    if retry_at is not None and observed.now < retry_at:
        draft.status.queue_position = None
        message = f"attempt {draft.status.attempt + 1} starts after {rfc3339(retry_at)}"
        draft.waiting(Phase.PENDING, FALSE, "BackingOff", message)
        return Decision(draft.status, tuple(draft.actions), requeue_at=retry_at)
    if observed.admitted and observed.secret_problem is not None:
        draft.condition(conditions.ACCEPTED, FALSE, SECRET_NOT_FOUND, observed.secret_problem)
        draft.finish(Phase.FAILED, SECRET_NOT_FOUND, observed.secret_problem)
        return _done(draft, observed)
    if observed.admitted:
        attempt = draft.status.attempt + 1
        task = observed.task
        name = job_name(task.name, task.uid, attempt)
        draft.open_attempt(attempt, name, draft.now)
        draft.status.queue_position = None
        draft.status.phase = Phase.PENDING
        draft.condition(conditions.QUEUED, FALSE, "Admitted", "the task was admitted")
        draft.condition(conditions.RUNNING, FALSE, "JobCreated", f"waiting for Job {name}")
        draft.actions += [Launch(attempt), Notify("Launched", f"attempt {attempt}: Job {name}")]
        return Decision(draft.status, tuple(draft.actions), holds_slot=True)
    position = observed.queue_position
    draft.status.queue_position = position
    where = "" if position is None else f" (position {position})"
    draft.waiting(Phase.QUEUED, TRUE, "WaitingForCapacity", f"waiting for a free slot{where}")
    return Decision(draft.status, tuple(draft.actions), wants_slot=True)


def launch_refused(
    observed: Observed, status: AgentTaskStatus, reason: str, message: str
) -> Decision:
    """The task after the runner objects of the attempt `status` opens could not be created
    for a reason retrying cannot change: not accepted, failed, the attempt closed."""
    draft = _Draft(
        status=status.model_copy(deep=True),
        now=rfc3339(observed.now),
        generation=observed.task.generation,
    )
    draft.condition(conditions.ACCEPTED, FALSE, reason, message)
    draft.close_attempt(reason)
    draft.finish(Phase.FAILED, reason, message)
    return _done(draft, observed)


def _retry_at(status: AgentTaskStatus, spec: AgentTaskSpec) -> datetime | None:
    """When the next attempt may start, if the last attempt failed and is being retried."""
    last = status.attempts[-1] if status.attempts else None
    if last is None or status.retries == 0 or last.reason == SUSPENDED:
        return None
    ended = parse_time(last.completion_time)
    if ended is None:
        return None
    delay = backoff_seconds(
        spec.retry.backoff.initial_seconds, spec.retry.backoff.max_seconds, status.retries
    )
    return ended + timedelta(seconds=delay)


def _finished(observed: Observed, draft: _Draft) -> Decision:
    """A finished task: only its TTL is left to act on."""
    ttl = observed.task.spec.get("ttlSecondsAfterFinished")
    completed = parse_time(draft.status.completion_time)
    if ttl is None or completed is None:
        return Decision(draft.status)
    due = completed + timedelta(seconds=int(ttl))
    if observed.now >= due:
        return Decision(draft.status, (DeleteTask(),))
    return Decision(draft.status, requeue_at=due)


def _done(draft: _Draft, observed: Observed) -> Decision:
    """A task that has just finished (TTL may already apply, e.g. ttlSecondsAfterFinished: 0)."""
    later = _finished(observed, draft)
    return Decision(draft.status, (*draft.actions, *later.actions), requeue_at=later.requeue_at)


def _validation_message(error: ValidationError) -> str:
    """`spec.<field>: <problem>` for the first few problems, naming each field."""
    parts = []
    for problem in error.errors()[:3]:
        location = ".".join(str(part) for part in problem["loc"])
        parts.append(f"spec.{location}: {problem['msg']}")
    return "; ".join(parts)
