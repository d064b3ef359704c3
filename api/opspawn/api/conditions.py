"""Status conditions, following Kubernetes API conventions.

`lastTransitionTime` changes only when a condition's status changes. The `Succeeded` condition
is monotonic: once it is True or False the task is finished, and nothing can set it again, so
`kubectl wait --for=condition=Succeeded` and every consumer of the status see one outcome only.
"""

from __future__ import annotations

from opspawn.api.agenttask import Condition, ConditionStatus

SUCCEEDED = "Succeeded"
ACCEPTED = "Accepted"
QUEUED = "Queued"
RUNNING = "Running"
STALLED = "Stalled"
MEMORY_AVAILABLE = "MemoryAvailable"
"""Long-term memory answered (True) or is unavailable (False); only for tasks that enable it."""


def find(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def is_finished(conditions: list[Condition]) -> bool:
    """True once `Succeeded` is True or False."""
    succeeded = find(conditions, SUCCEEDED)
    return succeeded is not None and succeeded.status != ConditionStatus.UNKNOWN


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A new list with `kind` set; the same list (unchanged) when `Succeeded` is already final."""
    existing = find(conditions, kind)
    if kind == SUCCEEDED and existing is not None and existing.status != ConditionStatus.UNKNOWN:
        return conditions
    transition = (
        now if existing is None or existing.status != status else existing.last_transition_time
    )
    updated = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    return (
        [updated if c.type == kind else c for c in conditions]
        if existing
        else [*conditions, updated]
    )
