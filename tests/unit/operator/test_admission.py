"""Admission: which waiting tasks may start now, in priority order, within every cap."""

from __future__ import annotations

from prometheus_client import REGISTRY

from opspawn.operator.admission import AdmissionQueue, Candidate, Slot, plan_admission
from opspawn.operator.settings import ConcurrencyLimits

GPT = "openai/gpt-4.1-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"


def candidate(
    uid: str,
    *,
    priority: int = 0,
    created: str = "2026-01-01T12:00:00Z",
    namespace: str = "team-a",
    model: str = GPT,
    name: str | None = None,
) -> Candidate:
    return Candidate(
        slot=Slot(uid=uid, namespace=namespace, model_key=model),
        priority=priority,
        creation_timestamp=created,
        name=name or uid,
    )


def slot(uid: str, *, namespace: str = "team-a", model: str = GPT) -> Slot:
    return Slot(uid=uid, namespace=namespace, model_key=model)


def admitted(plan_slots: tuple[Slot, ...]) -> list[str]:
    return [s.uid for s in plan_slots]


# --------------------------------------------------------------------------- plan_admission


def test_without_limits_every_waiting_task_is_admitted() -> None:
    plan = plan_admission([candidate("a"), candidate("b")], [slot("running")], ConcurrencyLimits())

    assert admitted(plan.admitted) == ["a", "b"]
    assert plan.positions == {}


def test_higher_priority_goes_first_then_the_oldest() -> None:
    waiting = [
        candidate("new-low", created="2026-01-01T12:00:03Z"),
        candidate("old-low", created="2026-01-01T12:00:01Z"),
        candidate("new-high", priority=10, created="2026-01-01T12:00:04Z"),
        candidate("negative", priority=-5, created="2026-01-01T11:00:00Z"),
    ]

    plan = plan_admission(waiting, [], ConcurrencyLimits(total=2))

    assert admitted(plan.admitted) == ["new-high", "old-low"]
    assert plan.positions == {"new-low": 0, "negative": 1}


def test_tasks_created_in_the_same_second_are_ordered_by_namespace_and_name() -> None:
    waiting = [
        candidate("3", namespace="team-b", name="alpha"),
        candidate("2", namespace="team-a", name="beta"),
        candidate("1", namespace="team-a", name="alpha"),
    ]

    plan = plan_admission(waiting, [], ConcurrencyLimits(total=0))

    assert plan.positions == {"1": 0, "2": 1, "3": 2}


def test_tasks_holding_a_slot_count_against_the_total() -> None:
    plan = plan_admission(
        [candidate("a"), candidate("b", created="2026-01-01T12:00:01Z")],
        [slot("running")],
        ConcurrencyLimits(total=2),
    )

    assert admitted(plan.admitted) == ["a"]
    assert plan.positions == {"b": 0}


def test_a_task_blocked_by_its_namespace_cap_does_not_hold_back_others() -> None:
    waiting = [
        candidate("a-2", namespace="team-a", created="2026-01-01T12:00:01Z"),
        candidate("b-1", namespace="team-b", created="2026-01-01T12:00:02Z"),
    ]

    plan = plan_admission(waiting, [slot("a-1")], ConcurrencyLimits(total=5, per_namespace=1))

    assert admitted(plan.admitted) == ["b-1"]
    assert plan.positions == {"a-2": 0}


def test_a_namespace_override_replaces_the_per_namespace_cap() -> None:
    limits = ConcurrencyLimits(per_namespace=1, per_namespace_overrides={"batch": 3})
    waiting = [candidate(f"batch-{i}", namespace="batch") for i in range(4)] + [
        candidate(f"a-{i}", namespace="team-a") for i in range(2)
    ]

    plan = plan_admission(waiting, [], limits)

    assert sorted(admitted(plan.admitted)) == ["a-0", "batch-0", "batch-1", "batch-2"]
    assert set(plan.positions) == {"a-1", "batch-3"}


def test_the_per_model_cap_counts_each_model_separately() -> None:
    waiting = [
        candidate("gpt-2", created="2026-01-01T12:00:01Z"),
        candidate("claude-1", model=CLAUDE, created="2026-01-01T12:00:02Z"),
        candidate("claude-2", model=CLAUDE, created="2026-01-01T12:00:03Z"),
    ]

    plan = plan_admission(waiting, [slot("gpt-1")], ConcurrencyLimits(per_model=1))

    assert admitted(plan.admitted) == ["claude-1"]
    assert plan.positions == {"gpt-2": 0, "claude-2": 1}


def test_a_task_needs_room_under_every_cap() -> None:
    limits = ConcurrencyLimits(total=10, per_namespace=5, per_model=1)

    plan = plan_admission([candidate("a")], [slot("other", namespace="team-b")], limits)

    assert admitted(plan.admitted) == []
    assert plan.positions == {"a": 0}


def test_a_cap_of_zero_admits_nothing() -> None:
    plan = plan_admission(
        [candidate("a")], [], ConcurrencyLimits(per_namespace_overrides={"team-a": 0})
    )

    assert plan.admitted == ()
    assert plan.positions == {"a": 0}


# --------------------------------------------------------------------------- AdmissionQueue


class Admittable:
    """Records the uids the queue says may start now."""

    def __init__(self) -> None:
        self.uids: list[str] = []

    def __call__(self, uid: str) -> None:
        self.uids.append(uid)


def test_a_request_with_room_is_admitted_and_holds_a_slot() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=1), calls)

    assert queue.request(candidate("a")) == (True, None)
    assert (queue.holding, queue.waiting) == (1, 0)
    assert calls.uids == []  # the asking task starts itself


def test_a_request_without_room_waits_with_its_position() -> None:
    queue = AdmissionQueue(ConcurrencyLimits(total=1), Admittable())
    queue.request(candidate("a"))

    assert queue.request(candidate("b", created="2026-01-01T12:00:01Z")) == (False, 0)
    assert queue.request(candidate("c", created="2026-01-01T12:00:02Z")) == (False, 1)
    assert (queue.holding, queue.waiting) == (1, 2)


def test_asking_again_keeps_the_place_in_the_queue() -> None:
    queue = AdmissionQueue(ConcurrencyLimits(total=1), Admittable())
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))
    queue.request(candidate("c", created="2026-01-01T12:00:02Z"))

    assert queue.request(candidate("c", created="2026-01-01T12:00:02Z")) == (False, 1)
    assert queue.waiting == 2


def test_a_released_slot_lets_the_next_waiting_task_in() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=1), calls)
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))
    queue.request(candidate("c", created="2026-01-01T12:00:02Z"))

    queue.release("a")

    assert calls.uids == ["b"]
    assert queue.request(candidate("b", created="2026-01-01T12:00:01Z")) == (True, None)
    assert queue.request(candidate("c", created="2026-01-01T12:00:02Z")) == (False, 0)


def test_a_higher_priority_arrival_jumps_the_queue() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=1), calls)
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))

    assert queue.request(candidate("urgent", priority=100, created="2026-01-01T12:00:09Z")) == (
        False,
        0,
    )
    queue.release("a")

    assert calls.uids == ["urgent"]


def test_a_slot_freed_for_a_waiting_task_is_not_taken_by_a_later_one() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=1), calls)
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))
    queue.release("a")  # b may start, but has not asked again yet

    assert queue.request(candidate("late", created="2026-01-01T12:00:05Z")) == (False, 0)


def test_releasing_a_waiting_task_moves_the_others_up() -> None:
    queue = AdmissionQueue(ConcurrencyLimits(total=1), Admittable())
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))
    queue.request(candidate("c", created="2026-01-01T12:00:02Z"))

    queue.release("b")  # e.g. suspended or cancelled while queued

    assert queue.waiting == 1
    assert queue.stale_positions() == ["c"]
    assert queue.request(candidate("c", created="2026-01-01T12:00:02Z")) == (False, 0)
    assert queue.stale_positions() == []


def test_releasing_an_unknown_task_changes_nothing() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=1), calls)
    queue.request(candidate("a"))

    queue.release("nobody")

    assert (queue.holding, queue.waiting, calls.uids) == (1, 0, [])


def test_hold_counts_a_task_with_a_live_job() -> None:
    queue = AdmissionQueue(ConcurrencyLimits(total=1), Admittable())

    queue.hold(slot("adopted"))

    assert queue.holding == 1
    assert queue.request(candidate("a")) == (False, 0)


def test_seeding_admits_by_priority_and_announces_the_admitted() -> None:
    calls = Admittable()
    queue = AdmissionQueue(ConcurrencyLimits(total=2), calls)

    queue.seed(
        [slot("running")],
        [
            candidate("low", created="2026-01-01T11:00:00Z"),
            candidate("high", priority=5, created="2026-01-01T12:00:00Z"),
        ],
    )

    assert calls.uids == ["high"]
    assert (queue.holding, queue.waiting) == (1, 2)
    assert queue.stale_positions() == ["low"]  # its status does not show its position yet


def test_the_queue_gauges_follow_waiting_and_holding_tasks() -> None:
    queue = AdmissionQueue(ConcurrencyLimits(total=1), Admittable())
    queue.request(candidate("a"))
    queue.request(candidate("b", created="2026-01-01T12:00:01Z"))

    assert REGISTRY.get_sample_value("opspawn_tasks_queued") == 1
    assert REGISTRY.get_sample_value("opspawn_tasks_running") == 1
    queue.release("a")
    queue.release("b")
    assert REGISTRY.get_sample_value("opspawn_tasks_queued") == 0
    assert REGISTRY.get_sample_value("opspawn_tasks_running") == 0
