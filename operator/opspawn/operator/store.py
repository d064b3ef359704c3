"""The reconcile's read side: every AgentTask and runner Job in scope, as last seen.

Filled once from a LIST of each at start (`load`), then kept current by kopf's watch events
and by the operator's own status writes (the patch response is the newest view of a task). A
view only ever replaces an older one (resourceVersions are etcd revisions, compared as
numbers), so a late watch event never undoes a newer write, and deleted objects are remembered
(by uid, a bounded number of them) so a LIST or a write that raced the deletion cannot bring
them back, and so that a deleted task's late runner events are known for what they are.

Jobs are filed under the task that controls them (their controller ownerReference), and a
task's Jobs are only those in its own namespace: a Job elsewhere that names the task's uid is
someone else's (see `ownership`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from opspawn.operator.views import JobView, TaskView

TOMBSTONES = 100_000
"""How many deleted uids are remembered (the oldest are forgotten first)."""


def newer_or_same(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is not older than `current`. Kubernetes serves etcd
    revisions as decimal numbers; anything else is taken as newer (the latest delivered)."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


class _Tombstones:
    """Deleted uids, each with the `namespace/name` it had (a bounded number, oldest out)."""

    def __init__(self) -> None:
        self._uids: OrderedDict[str, str] = OrderedDict()

    def add(self, uid: str, reference: str = "") -> None:
        self._uids[uid] = reference
        if len(self._uids) > TOMBSTONES:
            self._uids.popitem(last=False)

    def get(self, uid: str) -> str | None:
        return self._uids.get(uid)

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids


class Store:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskView] = {}
        self._jobs: dict[str, dict[str, JobView]] = {}
        self._deleted_tasks = _Tombstones()
        self._deleted_jobs = _Tombstones()

    def load(self, tasks: Iterable[TaskView], jobs: Iterable[JobView]) -> None:
        """The initial LIST (events that came in meanwhile keep their newer views)."""
        for task in tasks:
            self.put_task(task)
        for job in jobs:
            self.put_job(job)

    # ------------------------------------------------------------------ tasks

    def put_task(self, view: TaskView) -> None:
        """A task as the watch delivered it, or as the operator's own patch returned it."""
        if view.uid in self._deleted_tasks:
            return
        current = self._tasks.get(view.uid)
        if current is None or newer_or_same(view.resource_version, current.resource_version):
            self._tasks[view.uid] = view

    def delete_task(self, uid: str) -> TaskView | None:
        """Forget the task; the view it had, if the store held one."""
        view = self._tasks.pop(uid, None)
        self._deleted_tasks.add(uid, view.reference if view is not None else "")
        return view

    def remember_deleted(self, uid: str, namespace: str, name: str) -> None:
        """Record a task deleted while no operator ran (known from the audit store)."""
        if uid not in self._tasks:
            self._deleted_tasks.add(uid, f"{namespace}/{name}")

    def deleted_task(self, uid: str, namespace: str) -> str | None:
        """The name of the task `uid` of `namespace` when it was deleted while this operator
        ran (None otherwise): its runner's late events are no one's forgery."""
        reference = self._deleted_tasks.get(uid)
        if not reference:
            return None
        deleted_namespace, _, name = reference.partition("/")
        return name if deleted_namespace == namespace else None

    def task(self, uid: str) -> TaskView | None:
        return self._tasks.get(uid)

    def tasks(self) -> list[TaskView]:
        return list(self._tasks.values())

    # ------------------------------------------------------------------ jobs

    def put_job(self, view: JobView) -> None:
        if not view.task_uid or view.uid in self._deleted_jobs:
            return
        jobs = self._jobs.setdefault(view.task_uid, {})
        current = jobs.get(view.uid)
        if current is None or newer_or_same(view.resource_version, current.resource_version):
            jobs[view.uid] = view

    def delete_job(self, view: JobView) -> None:
        self._deleted_jobs.add(view.uid)
        jobs = self._jobs.get(view.task_uid)
        if jobs is not None:
            jobs.pop(view.uid, None)
            if not jobs:
                del self._jobs[view.task_uid]

    def jobs(self, task: TaskView) -> list[JobView]:
        """The task's Jobs: controlled by it, in its namespace."""
        found = self._jobs.get(task.uid, {}).values()
        return [job for job in found if job.namespace == task.namespace]

    def foreign_jobs(self, task: TaskView) -> list[JobView]:
        """Jobs controlled by a reference to the task's uid from another namespace (which the
        garbage collector treats as absent): an attempt to pass for the task's runner."""
        found = self._jobs.get(task.uid, {}).values()
        return [job for job in found if job.namespace != task.namespace]
