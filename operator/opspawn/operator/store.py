"""The reconcile's read side: kopf's watch indexes, plus the operator's own latest writes.

kopf fills two indexes (AgentTasks by uid, runner Jobs by task uid) before any handler runs,
so once `bind` has been called the store knows every task and Job in scope. A status the
operator has just written is kept as an overlay until the watch delivers it, so the next
reconcile of the same task never acts on a view older than its own last write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opspawn.operator.views import JobView, TaskView

TaskIndex = Mapping[str, Iterable[TaskView]]
JobIndex = Mapping[str, Iterable[JobView]]


def _revision(resource_version: str) -> int | None:
    """etcd's revision behind a resourceVersion (Kubernetes serves it as a decimal number)."""
    return int(resource_version) if resource_version.isdigit() else None


class Store:
    def __init__(self) -> None:
        self._tasks: TaskIndex | None = None
        self._jobs: JobIndex | None = None
        self._written: dict[str, TaskView] = {}

    @property
    def bound(self) -> bool:
        return self._tasks is not None

    def bind(self, tasks: TaskIndex, jobs: JobIndex) -> None:
        """Attach kopf's live indexes (they are the same objects on every handler call)."""
        self._tasks, self._jobs = tasks, jobs

    def task_uids(self) -> list[str]:
        return list(self._tasks or {})

    def task(self, uid: str) -> TaskView | None:
        written = self._written.get(uid)
        if written is not None:
            return written
        return next(iter((self._tasks or {}).get(uid, ())), None)

    def jobs(self, task_uid: str) -> list[JobView]:
        return list((self._jobs or {}).get(task_uid, ()))

    def wrote(self, view: TaskView) -> None:
        self._written[view.uid] = view

    def observed(self, uid: str, resource_version: str) -> None:
        """The watch delivered `resource_version` of task `uid`: drop an overlay it covers."""
        written = self._written.get(uid)
        if written is None:
            return
        seen, ours = _revision(resource_version), _revision(written.resource_version)
        if resource_version == written.resource_version or (
            seen is not None and ours is not None and seen > ours
        ):
            del self._written[uid]

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
