"""What the operator remembers of AgentTasks and runner Jobs between watch events.

The store (see `store`) holds these views, not whole objects: a task keeps what its
reconcile needs (spec and status, without managedFields or annotations), a Job only the few
fields its lifecycle depends on. That keeps memory flat with thousands of tasks present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opspawn.api.agenttask import AgentTaskStatus
from opspawn.api.conditions import is_finished
from opspawn.operator.ownership import task_controller_uid
from opspawn.operator.runner_job import ATTEMPT_LABEL, TASK_UID_LABEL, KubeObject

_STATUS_MEMBERS = frozenset(
    field.alias or name for name, field in AgentTaskStatus.model_fields.items()
)


@dataclass(frozen=True, slots=True)
class TaskView:
    """An AgentTask as last seen (or as last written by the operator).

    Spec and status are kept as compact JSON and parsed where they are used: as nested dicts
    they took three times the memory, which with ten thousand tasks present was the larger
    part of the operator's. What the queue and the admission checks read for every task is
    kept parsed."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    creation_timestamp: str
    deleting: bool
    priority: int
    suspended: bool
    cancelled: bool
    model_key: str
    """`<provider>/<model name>`: what the per-model concurrency cap counts by."""
    spec_json: bytes
    status_json: bytes

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TaskView:
        meta = body["metadata"]
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        model = spec.get("model") or {}
        return cls(
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta["uid"]),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta.get("resourceVersion", "")),
            creation_timestamp=str(meta.get("creationTimestamp", "")),
            deleting=meta.get("deletionTimestamp") is not None,
            priority=int(spec.get("priority") or 0),
            suspended=bool(spec.get("suspend")),
            cancelled=bool(spec.get("cancel")),
            model_key=f"{model.get('provider', '')}/{model.get('name', '')}",
            spec_json=_compact(spec),
            status_json=_compact(status),
        )

    @property
    def spec(self) -> dict[str, Any]:
        """The spec, parsed afresh (a copy the caller may change)."""
        parsed: dict[str, Any] = json.loads(self.spec_json)
        return parsed

    @property
    def finished(self) -> bool:
        return is_finished(self.status.conditions)

    @property
    def raw_status(self) -> dict[str, Any]:
        """The status as written, parsed afresh (a copy the caller may change)."""
        parsed: dict[str, Any] = json.loads(self.status_json)
        return parsed

    def _parsed_status(self) -> AgentTaskStatus | None:
        """The status as a model, parsed at each use: kept for every task, the models cost
        more memory than the plain status with thousands of tasks, and a reconcile parses a
        few times. Members this version of the API does not know (written by a newer
        operator, say) are ignored; None when the rest still does not fit the model."""
        try:
            return AgentTaskStatus.model_validate(
                {k: v for k, v in self.raw_status.items() if k in _STATUS_MEMBERS}
            )
        except ValueError:
            return None

    @property
    def status_readable(self) -> bool:
        return self._parsed_status() is not None

    @property
    def status(self) -> AgentTaskStatus:
        """The status as a model (empty when unreadable: check `status_readable` first)."""
        return self._parsed_status() or AgentTaskStatus()

    @property
    def reference(self) -> str:
        return f"{self.namespace}/{self.name}"

    def as_object(self) -> KubeObject:
        """The task as the Job builder wants it (metadata, spec)."""
        return {
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
            "spec": self.spec,
        }


@dataclass(frozen=True, slots=True)
class JobView:
    """A runner Job: which task and attempt it belongs to, and where it stands."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    task_uid: str
    """The uid of the AgentTask that controls the Job (its controller ownerReference), ""
    when none does; the only claim of ownership the operator believes."""
    claimed_uid: str
    """The task uid its label claims (anyone may write a label: compared, never trusted)."""
    attempt: int
    creation_timestamp: str
    active: int
    """Pods the Job controller has running or pending."""
    ready: int
    suspended: bool
    deleting: bool
    complete: bool
    failed: bool
    failure_reason: str
    failure_message: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        status = body.get("status") or {}
        conditions = {
            c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"
        }
        failed = conditions.get("Failed") or {}
        return cls(
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            task_uid=task_controller_uid(meta),
            claimed_uid=str(labels.get(TASK_UID_LABEL, "")),
            attempt=_int(labels.get(ATTEMPT_LABEL)),
            creation_timestamp=str(meta.get("creationTimestamp", "")),
            active=_int(status.get("active")),
            ready=_int(status.get("ready")),
            suspended=bool((body.get("spec") or {}).get("suspend")),
            deleting=meta.get("deletionTimestamp") is not None,
            complete="Complete" in conditions,
            failed=bool(failed),
            failure_reason=str(failed.get("reason") or ""),
            failure_message=str(failed.get("message") or ""),
        )

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def forged(self) -> bool:
        """Labelled as a task's runner Job without being controlled by that task."""
        return bool(self.claimed_uid) and self.claimed_uid != self.task_uid


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _compact(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_plain).encode()


def _plain(value: Any) -> dict[str, Any]:
    """JSON's fallback for kopf's read-only views of an object: mappings, but not dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
