"""The reconcile loop: watch events put task uids on a work queue; workers decide and act.

One reconcile of one task reads the store (no API call in the common case), asks
`lifecycle.decide` what the task's status and children should be, asks the admission queue
for a slot when the task wants one, carries out the actions and writes the status only where
it differs. Point reads happen only where the watch cannot answer: the Pods of a finished Job
(for the runner's exit code and termination message), a Job the watch has not shown yet, the
API-key Secret when a task is admitted, and, while a runner Pod has not started, its Pod status
and the Job's FailedCreate Events (why it cannot start: a missing ServiceAccount, an image that
cannot be pulled), looked at again every few seconds.

Only objects the task controls count (see `ownership`); a Job elsewhere that claims to be the
task's is reported as a security event and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opspawn.api.agenttask import TERMINAL_PHASES, AgentTaskSpec, AgentTaskStatus, Phase
from opspawn.operator import metrics
from opspawn.operator.admission import AdmissionQueue, Candidate, Slot
from opspawn.operator.audit import AuditStore, TaskSnapshot
from opspawn.operator.audit_writer import AuditWriter, deleted_attempt, object_security_event
from opspawn.operator.kube import KubeClient, LaunchRefusedError
from opspawn.operator.lifecycle import (
    DeleteJob,
    DeleteTask,
    Launch,
    Notify,
    Observed,
    decide,
    launch_refused,
    parse_time,
    rfc3339,
)
from opspawn.operator.outcome import (
    AttemptOutcome,
    attempt_outcome,
    pod_creation_failed,
    runner_lost,
    start_failure,
)
from opspawn.operator.recorder import EventRecorder
from opspawn.operator.runner_job import build_runner_job, build_task_secret, job_name
from opspawn.operator.settings import OperatorSettings
from opspawn.operator.store import Store
from opspawn.operator.views import JobView, TaskView
from opspawn.operator.workqueue import WorkQueue

if TYPE_CHECKING:
    from opspawn.operator.memory_access import MemoryAccess

logger = logging.getLogger(__name__)

START_CHECK_SECONDS = 5.0
"""While a runner Pod has not started, why not is looked at again this often (neither a
FailedCreate Event nor a Pod's waiting reason changes the Job, so no watch event says so)."""

QUOTA_EXCEEDED = "exceeded quota"
"""In a FailedCreate message: a ResourceQuota is full for now, which the Job controller
outwaits (every other FailedCreate cause needs the spec or the namespace changed)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _slot(task: TaskView) -> Slot:
    return Slot(uid=task.uid, namespace=task.namespace, model_key=task.model_key)


def _candidate(task: TaskView) -> Candidate:
    return Candidate(
        slot=_slot(task),
        priority=task.priority,
        creation_timestamp=task.creation_timestamp,
        name=task.name,
    )


def _ref(task: TaskView) -> dict[str, Any]:
    """The object reference kopf's JSON log formatter puts under `object`."""
    return {
        "k8s_ref": {
            "apiVersion": "opspawn.io/v1alpha1",
            "kind": "AgentTask",
            "namespace": task.namespace,
            "name": task.name,
            "uid": task.uid,
        },
        "k8s_skip": True,
    }


def status_patch(current: Mapping[str, Any], desired: AgentTaskStatus) -> dict[str, Any]:
    """The top-level status fields that differ from `current` (the status as served), as a
    JSON merge patch: every declared field is written explicitly, null removes one.

    Unset (None) values are left out rather than written as null, because a merge patch
    deletes null members, nested ones too, and the served status would never match."""
    after = desired.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch: dict[str, Any] = {
        key: value for key, value in after.items() if current.get(key) != value
    }
    for key in current:
        if key not in after:
            patch[key] = None
    return patch


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeClient,
        clock: Callable[[], datetime] = utc_now,
        audit: AuditStore | None = None,
        memory: MemoryAccess | None = None,
    ) -> None:
        self._settings = settings
        self._kube = kube
        self._clock = clock
        self.queue = WorkQueue()
        self.store = Store()
        self.admission = AdmissionQueue(settings.limits, self.queue.add)
        self._events = EventRecorder(kube, settings.event_interval_seconds)
        self._ready = asyncio.Event()
        self._audit = audit
        self._memory = memory
        self.audit_writer = AuditWriter(audit)
        self._stall_after = (
            timedelta(seconds=settings.stall_seconds)
            if settings.database_url is not None and settings.stall_seconds
            else None
        )

    @property
    def ready(self) -> bool:
        """The store has been filled from the initial LISTs and the workers run."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # ------------------------------------------------------------------ from the watches

    def start(self, tasks: list[TaskView], jobs: list[JobView]) -> None:
        """Fill the store from the initial LISTs, seed the admission queue with the tasks that
        have a live Job and those that wait (so that after a restart the first task reconciled
        cannot take a slot a higher priority deserves), and let the workers go through all."""
        self.store.load(tasks, jobs)
        holding: list[Slot] = []
        waiting: list[Candidate] = []
        for task in self.store.tasks():
            if task.finished:
                continue
            if any(not j.finished and not j.deleting for j in self.store.jobs(task)):
                holding.append(_slot(task))
            elif not task.suspended and not task.cancelled:
                waiting.append(_candidate(task))
        self.admission.seed(holding, waiting)
        for task in self.store.tasks():
            self.queue.add(task.uid)
        self._ready.set()

    def has_task_version(self, uid: str, resource_version: str) -> bool:
        """Whether the store holds the task at exactly this resourceVersion already."""
        current = self.store.task(uid)
        return current is not None and current.resource_version == resource_version

    def task_changed(self, view: TaskView) -> None:
        self.store.put_task(view)
        self.queue.add(view.uid)

    def task_deleted(self, uid: str) -> None:
        view = self.store.delete_task(uid)
        if view is not None:
            self._close_deleted_attempt(view)
        self.queue.add(uid)

    def _close_deleted_attempt(self, task: TaskView) -> None:
        """A task deleted in flight: its open attempt ends in the audit store as Cancelled
        (TaskDeleted), so no attempt stays Running there forever."""
        status = task.status
        record = status.attempts[-1] if status.attempts else None
        if task.finished or record is None or record.completion_time is not None:
            return
        self.audit_writer.snapshot(
            deleted_attempt(task.uid, record.attempt, task.namespace, task.name, self._clock())
        )

    def job_changed(self, view: JobView, *, deleted: bool) -> None:
        if view.forged and not deleted:
            self.audit_writer.security_event(
                view.uid,
                object_security_event(
                    "Job",
                    {"namespace": view.namespace, "name": view.name, "uid": view.uid},
                    "ForgedRunnerJob",
                    f"Job {view.namespace}/{view.name} is labelled as the runner of task"
                    f" {view.claimed_uid} but that task does not control it; it is ignored",
                    view.claimed_uid,
                ),
            )
        if deleted:
            self.store.delete_job(view)
        else:
            self.store.put_job(view)
        if view.task_uid:
            self.queue.add(view.task_uid)

    # ------------------------------------------------------------------ workers

    async def run(self) -> None:
        """The workers, the Event posters and the queue-position refresher, until cancelled."""
        await self._ready.wait()
        workers = [
            asyncio.create_task(self.queue.run_worker(self.reconcile), name=f"reconcile-{i}")
            for i in range(self._settings.workers)
        ]
        workers.append(asyncio.create_task(self._events.run(), name="event-recorder"))
        workers.append(asyncio.create_task(self.audit_writer.run(), name="audit-writer"))
        workers.append(
            asyncio.create_task(
                self.audit_writer.close_vanished(
                    lambda uid: self.store.task(uid) is not None,
                    self._settings.namespaces,
                    self._clock(),
                    # so that their runners' late events are known for what they are
                    vanished=self.store.remember_deleted,
                ),
                name="close-vanished-attempts",
            )
        )
        try:
            while True:
                await asyncio.sleep(self._settings.queue_position_refresh_seconds)
                for uid in self.admission.stale_positions():
                    self.queue.add(uid)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def reconcile(self, uid: str) -> None:
        task = self.store.task(uid)
        if task is None or task.deleting:
            self.admission.release(uid)
            self.queue.forget(uid)
            self._events.forget(uid)
            return
        if not task.status_readable:
            # Acting on a status it cannot read could launch a finished task again.
            logger.error(
                "the status does not fit this operator's API; not acting on it", extra=_ref(task)
            )
            return
        with metrics.reconcile_timer():
            try:
                await self._reconcile(task)
            except Exception:
                logger.exception("reconcile failed; retrying", extra=_ref(task))
                raise

    async def _reconcile(self, task: TaskView) -> None:
        observed = await self._observe(task)
        decision = decide(observed)
        if decision.wants_slot:
            admitted, position = self.admission.request(_candidate(task))
            problem = await self._secret_problem(task) if admitted else None
            observed = replace(
                observed, admitted=admitted, queue_position=position, secret_problem=problem
            )
            decision = decide(observed)
        if decision.holds_slot:
            self.admission.hold(_slot(task))
        elif not decision.wants_slot:
            self.admission.release(task.uid)

        for action in decision.actions:
            match action:
                case Launch(attempt=attempt):
                    refusal = await self._launch(task, attempt)
                    if refusal is not None:
                        decision = launch_refused(
                            observed, decision.status, refusal.reason, str(refusal)
                        )
                        self.admission.release(task.uid)
                        break
                case DeleteJob(name=name, uid=job_uid):
                    await self._kube.delete_job(task.namespace, name, job_uid)
                case DeleteTask():
                    await self._kube.delete_task(task.namespace, task.name, task.uid)
                    logger.info("deleted: ttlSecondsAfterFinished ran out", extra=_ref(task))
        await self._write_status(task, decision.status)
        for action in decision.actions:
            if isinstance(action, Notify):
                self._events.record(
                    task,
                    action.reason,
                    action.message,
                    warning=action.warning,
                    time_text=rfc3339(observed.now),
                )
        if decision.requeue_at is not None:
            delay = (decision.requeue_at - observed.now).total_seconds()
            self.queue.add_after(task.uid, delay + 0.05)

    async def _observe(self, task: TaskView) -> Observed:
        """The task, the Job of its current attempt and, once that ended, how it ended."""
        now = self._clock()
        jobs = self.store.jobs(task)
        for foreign in self.store.foreign_jobs(task):
            self._report_foreign_job(task, foreign)
        status = task.status
        current = max([status.attempt, *(job.attempt for job in jobs)])
        job = next((j for j in jobs if j.attempt == current), None)
        record = status.attempts[-1] if status.attempts else None
        open_attempt = (
            record is not None and record.attempt == current and record.completion_time is None
        )
        if task.finished or not open_attempt or current == 0:
            return Observed(task=task, now=now, job=job)
        outcome: AttemptOutcome | None = None
        if job is None:
            # Not in the watch cache: just created (the watch lags) or deleted by someone.
            name = job_name(task.name, task.uid, current)
            raw = await self._kube.read_job(task.namespace, name)
            found = None if raw is None else JobView.from_body(raw)
            if found is not None and found.task_uid != task.uid:
                self._report_name_taken(task, found)
                found = None
            if found is None:
                outcome = runner_lost(f"the runner Job {name} was deleted")
            job = found
        if job is not None and job.finished:
            outcome = attempt_outcome(job, await self._kube.job_pods(task.namespace, job.uid))
        elif job is not None and self._not_started(task, job):
            created = parse_time(job.creation_timestamp)
            if created is None or now - created >= timedelta(seconds=START_CHECK_SECONDS):
                # Not at once: a Pod normally starts within seconds, without a check's reads.
                outcome = await self._start_problem(task, job)
            if outcome is None:
                self.queue.add_after(task.uid, START_CHECK_SECONDS)
        return Observed(task=task, now=now, job=job, outcome=outcome, stall_after=self._stall_after)

    @staticmethod
    def _not_started(task: TaskView, job: JobView) -> bool:
        """The runner Pod of a live Job has not started yet."""
        return not (
            job.ready or job.suspended or job.deleting or task.status.phase == Phase.RUNNING
        )

    async def _start_problem(self, task: TaskView, job: JobView) -> AttemptOutcome | None:
        """Why the runner Pod cannot start, when that will not change by waiting."""
        if not job.active:
            message = await self._kube.pod_creation_failure(task.namespace, job.uid)
            if message is None or QUOTA_EXCEEDED in message:  # room comes back: wait for it
                return None
            return pod_creation_failed(message)
        return start_failure(await self._kube.job_pods(task.namespace, job.uid))

    def _report_foreign_job(self, task: TaskView, job: JobView) -> None:
        self.audit_writer.security_event(
            job.uid,
            object_security_event(
                "Job",
                {"namespace": job.namespace, "name": job.name, "uid": job.uid},
                "CrossNamespaceOwner",
                f"Job {job.namespace}/{job.name} names task {task.reference} as its controller"
                " from another namespace; it is ignored",
                task.uid,
            ),
        )

    def _report_name_taken(self, task: TaskView, job: JobView) -> None:
        self.audit_writer.security_event(
            job.uid,
            object_security_event(
                "Job",
                {"namespace": job.namespace, "name": job.name, "uid": job.uid},
                "NameConflict",
                f"Job {job.namespace}/{job.name} has the name of a runner Job of task"
                f" {task.reference} but the task does not control it; it is ignored",
                task.uid,
            ),
        )

    async def _secret_problem(self, task: TaskView) -> str | None:
        reference = (task.spec.get("model") or {}).get("apiKeySecretRef")
        if not reference:
            return None
        return await self._kube.secret_problem(
            task.namespace, str(reference.get("name")), str(reference.get("key"))
        )

    async def _prepare_memory(
        self, memory: MemoryAccess, task: TaskView, spec: AgentTaskSpec
    ) -> None:
        """Provision the namespace's long-term memory for the task. When that fails, the runner
        goes on without memory (or fails, if the task requires it) and an Event says why."""
        problem = await memory.prepare(task.namespace, spec)
        if problem is not None:
            logger.warning("long-term memory not provisioned: %s", problem, extra=_ref(task))
            now = rfc3339(self._clock())
            self._events.record(task, "MemoryNotProvisioned", problem, warning=True, time_text=now)

    async def _launch(self, task: TaskView, attempt: int) -> LaunchRefusedError | None:
        """Create the attempt's Secret and Job; why not, when retrying cannot help."""
        body = task.as_object()
        spec = AgentTaskSpec.model_validate(body["spec"])  # decide() checked it; fail if not
        if self._memory is not None:
            await self._prepare_memory(self._memory, task, spec)
        job = build_runner_job(body, attempt, self._settings.runner)
        secret = build_task_secret(body, secrets.token_urlsafe(32), self._settings.runner)
        for kind, obj, ensure in (
            ("Secret", secret, self._kube.ensure_secret),
            ("Job", job, self._kube.ensure_job),
        ):
            try:
                await ensure(obj)
            except LaunchRefusedError as refusal:
                logger.warning("not launched: %s", refusal, extra=_ref(task))
                if refusal.existing_metadata:
                    self.audit_writer.security_event(
                        str(refusal.existing_metadata.get("uid") or obj["metadata"]["name"]),
                        object_security_event(
                            kind, refusal.existing_metadata, refusal.reason, str(refusal), task.uid
                        ),
                    )
                return refusal
        metrics.LAUNCHED.labels(task.namespace).inc()
        logger.info(
            "launched attempt %d as Job %s", attempt, job["metadata"]["name"], extra=_ref(task)
        )
        return None

    def _record_snapshot(self, task: TaskView, status: AgentTaskStatus) -> None:
        """Tell the audit store what the operator knows of the current attempt (spec, phase,
        times), in the background and retried until it is recorded: Postgres being away must
        neither hold up the lifecycle nor lose a final phase."""
        if status.attempt == 0:
            return
        record = status.attempts[-1] if status.attempts else None
        model = task.spec.get("model") or {}
        succeeded = next((c for c in status.conditions if c.type == "Succeeded"), None)
        snapshot = TaskSnapshot(
            task_uid=task.uid,
            attempt=status.attempt,
            namespace=task.namespace,
            name=task.name,
            model_provider=model.get("provider"),
            model_name=model.get("name"),
            phase=status.phase.value if status.phase else None,
            reason=succeeded.reason if succeeded and succeeded.status != "Unknown" else None,
            exit_code=record.exit_code if record else None,
            started_at=parse_time(record.start_time if record else None),
            finished_at=parse_time(record.completion_time if record else None),
            spec=task.spec,
        )
        self.audit_writer.snapshot(snapshot)

    async def _write_status(self, task: TaskView, desired: AgentTaskStatus) -> None:
        patch = status_patch(task.raw_status, desired)
        if not patch:
            return
        patched = await self._kube.patch_task_status(task.namespace, task.name, patch)
        if patched is None:
            return
        self.store.put_task(TaskView.from_body(patched))
        if self._audit is not None and (
            desired.attempt != task.status.attempt or desired.phase != task.status.phase
        ):
            self._record_snapshot(task, desired)
        if desired.phase in TERMINAL_PHASES and task.status.phase != desired.phase:
            succeeded = next((c for c in desired.conditions if c.type == "Succeeded"), None)
            reason = succeeded.reason if succeeded else ""
            metrics.FINISHED.labels(desired.phase.value, reason).inc()
            logger.info("finished: %s (%s)", desired.phase.value, reason, extra=_ref(task))
