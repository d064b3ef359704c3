"""The admission queue: which waiting tasks may start now, and where the others stand.

A pure function of who holds a runner slot and who waits, so it can be recomputed from the
watch caches at any moment (after a restart too) and tested without a cluster. Waiting tasks
are taken in priority order (higher first), then oldest first; a task that does not fit
because of its namespace's or model's cap does not hold back tasks behind it that do fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from opspawn.operator import metrics
from opspawn.operator.settings import ConcurrencyLimits


@dataclass(frozen=True)
class Slot:
    """A task, for counting against the caps."""

    uid: str
    namespace: str
    model_key: str


@dataclass(frozen=True)
class Candidate:
    """A task waiting to be admitted."""

    slot: Slot
    priority: int
    creation_timestamp: str
    name: str

    def order(self) -> tuple[int, str, str, str]:
        return (-self.priority, self.creation_timestamp, self.slot.namespace, self.name)


@dataclass(frozen=True)
class AdmissionPlan:
    admitted: tuple[Slot, ...] = ()
    """Tasks to launch now, in order."""
    positions: dict[str, int] = field(default_factory=dict)
    """Queue position (0 runs next) of every task left waiting, by uid."""


def plan_admission(
    waiting: Iterable[Candidate], holding: Iterable[Slot], limits: ConcurrencyLimits
) -> AdmissionPlan:
    """Admit, in order, every waiting task for which every applicable cap has room."""
    total = 0
    per_namespace: Counter[str] = Counter()
    per_model: Counter[str] = Counter()

    def take(slot: Slot) -> None:
        nonlocal total
        total += 1
        per_namespace[slot.namespace] += 1
        per_model[slot.model_key] += 1

    def fits(slot: Slot) -> bool:
        namespace_cap = limits.namespace_cap(slot.namespace)
        return (
            (limits.total is None or total < limits.total)
            and (namespace_cap is None or per_namespace[slot.namespace] < namespace_cap)
            and (limits.per_model is None or per_model[slot.model_key] < limits.per_model)
        )

    for slot in holding:
        take(slot)
    admitted: list[Slot] = []
    positions: dict[str, int] = {}
    for candidate in sorted(waiting, key=Candidate.order):
        if fits(candidate.slot):
            take(candidate.slot)
            admitted.append(candidate.slot)
        else:
            positions[candidate.slot.uid] = len(positions)
    return AdmissionPlan(admitted=tuple(admitted), positions=positions)


class AdmissionQueue:
    """Who holds a slot and who waits, with the plan kept current as both change.

    The reconcile asks `request` for a task that wants to start, tells `hold` about a task with
    a live Job and `release` about one without. When a release (or any change) lets waiting
    tasks in, `on_admittable` is called with each of their uids, so they start at once.
    """

    def __init__(self, limits: ConcurrencyLimits, on_admittable: Callable[[str], None]) -> None:
        self._limits = limits
        self._on_admittable = on_admittable
        self._holding: dict[str, Slot] = {}
        self._waiting: dict[str, Candidate] = {}
        self._plan = AdmissionPlan()
        self._published: dict[str, int | None] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def holding(self) -> int:
        return len(self._holding)

    def seed(self, holding: Iterable[Slot], waiting: Iterable[Candidate]) -> None:
        """Start from what the watch caches show (after a restart: who runs, who waits), so
        that the first task to be reconciled does not take a slot a higher priority deserves."""
        self._holding.update((slot.uid, slot) for slot in holding)
        self._waiting.update((candidate.slot.uid, candidate) for candidate in waiting)
        self._replan()

    def request(self, candidate: Candidate) -> tuple[bool, int | None]:
        """(admitted, queue position): admitted tasks hold a slot from now on."""
        uid = candidate.slot.uid
        self._holding.pop(uid, None)
        self._waiting[uid] = candidate
        self._replan(asking=uid)
        if uid in {slot.uid for slot in self._plan.admitted}:
            self.hold(candidate.slot)
            return True, None
        position = self._plan.positions.get(uid)
        self._published[uid] = position
        return False, position

    def hold(self, slot: Slot) -> None:
        self._waiting.pop(slot.uid, None)
        self._published.pop(slot.uid, None)
        self._holding[slot.uid] = slot
        self._update_gauges()

    def release(self, uid: str) -> None:
        """The task neither holds nor wants a slot (finished, suspended, backing off, gone)."""
        held = self._holding.pop(uid, None)
        waited = self._waiting.pop(uid, None)
        self._published.pop(uid, None)
        if held is not None or waited is not None:
            self._replan()

    def stale_positions(self) -> list[str]:
        """Waiting tasks whose status shows a queue position that is no longer right."""
        return [
            uid
            for uid, position in self._plan.positions.items()
            if self._published.get(uid, -1) != position
        ]

    def _replan(self, asking: str | None = None) -> None:
        self._plan = plan_admission(self._waiting.values(), self._holding.values(), self._limits)
        for slot in self._plan.admitted:
            if slot.uid != asking:
                self._on_admittable(slot.uid)
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._waiting))
        metrics.RUNNING.set(len(self._holding))
