"""The store: kopf's watch indexes, overlaid with the operator's own latest status writes."""

from __future__ import annotations

from opspawn.operator.store import Store
from opspawn.operator.views import JobView, TaskView
from tests.unit.operator.builders import TASK_UID, job, task

OTHER_UID = "9a8b7c6d-0000-1111-2222-333344445555"


def bound(*views: TaskView, jobs: dict[str, list[JobView]] | None = None) -> Store:
    store = Store()
    store.bind({view.uid: [view] for view in views}, jobs or {})
    return store


def test_an_unbound_store_knows_nothing() -> None:
    store = Store()

    assert not store.bound
    assert store.task_uids() == []
    assert store.task(TASK_UID) is None
    assert store.jobs(TASK_UID) == []


def test_a_bound_store_serves_the_watch_indexes() -> None:
    watched = task(resource_version="100")
    attempt = job(1)
    store = bound(watched, jobs={TASK_UID: [attempt]})

    assert store.bound
    assert store.task_uids() == [TASK_UID]
    assert store.task(TASK_UID) == watched
    assert store.task(OTHER_UID) is None
    assert store.jobs(TASK_UID) == [attempt]
    assert store.jobs(OTHER_UID) == []


def test_the_index_is_read_live() -> None:
    tasks: dict[str, list[TaskView]] = {}
    store = Store()
    store.bind(tasks, {})

    tasks[TASK_UID] = [task()]

    assert store.task_uids() == [TASK_UID]
    assert store.task(TASK_UID) == tasks[TASK_UID][0]


def test_the_operators_own_write_wins_over_an_older_watch_view() -> None:
    store = bound(task(resource_version="100"))
    ours = task(status={"phase": "Pending"}, resource_version="101")

    store.wrote(ours)

    assert store.task(TASK_UID) == ours


def test_an_older_watch_event_keeps_the_write() -> None:
    store = bound(task(resource_version="100"))
    ours = task(status={"phase": "Pending"}, resource_version="101")
    store.wrote(ours)

    store.observed(TASK_UID, "100")

    assert store.task(TASK_UID) == ours


def test_the_watch_delivering_the_write_drops_it() -> None:
    served = task(status={"phase": "Pending"}, resource_version="101")
    tasks = {TASK_UID: [task(resource_version="100")]}
    store = Store()
    store.bind(tasks, {})
    store.wrote(served)

    tasks[TASK_UID] = [served]
    store.observed(TASK_UID, "101")

    assert store.task(TASK_UID) is served


def test_a_newer_watch_event_drops_the_write() -> None:
    newer = task(status={"phase": "Running"}, resource_version="105")
    tasks = {TASK_UID: [task(resource_version="100")]}
    store = Store()
    store.bind(tasks, {})
    store.wrote(task(status={"phase": "Pending"}, resource_version="101"))

    tasks[TASK_UID] = [newer]
    store.observed(TASK_UID, "105")

    assert store.task(TASK_UID) is newer


def test_resource_versions_compare_as_numbers_not_text() -> None:
    store = bound(task(resource_version="99"))
    ours = task(status={"phase": "Pending"}, resource_version="100")
    store.wrote(ours)

    store.observed(TASK_UID, "99")  # "99" > "100" as text
    assert store.task(TASK_UID) == ours

    store.observed(TASK_UID, "1000")
    assert store.task(TASK_UID) == task(resource_version="99")


def test_a_non_numeric_resource_version_drops_the_write_only_when_equal() -> None:
    store = bound(task(resource_version="a"))
    ours = task(status={"phase": "Pending"}, resource_version="b")
    store.wrote(ours)

    store.observed(TASK_UID, "c")
    assert store.task(TASK_UID) == ours

    store.observed(TASK_UID, "b")
    assert store.task(TASK_UID) == task(resource_version="a")


def test_a_watch_event_of_another_task_keeps_the_write() -> None:
    store = bound(task(resource_version="100"), task(uid=OTHER_UID, resource_version="200"))
    ours = task(status={"phase": "Pending"}, resource_version="101")
    store.wrote(ours)

    store.observed(OTHER_UID, "300")

    assert store.task(TASK_UID) == ours


def test_a_later_write_replaces_an_earlier_one() -> None:
    store = bound(task(resource_version="100"))
    store.wrote(task(status={"phase": "Pending"}, resource_version="101"))
    latest = task(status={"phase": "Running"}, resource_version="102")

    store.wrote(latest)
    store.observed(TASK_UID, "101")

    assert store.task(TASK_UID) == latest


def test_forgetting_a_task_drops_its_write() -> None:
    watched = task(resource_version="100")
    store = bound(watched)
    store.wrote(task(status={"phase": "Pending"}, resource_version="101"))

    store.forget(TASK_UID)

    assert store.task(TASK_UID) == watched


def test_a_write_is_served_for_a_task_the_index_has_not_shown_yet() -> None:
    store = bound()
    ours = task(status={"phase": "Pending"}, resource_version="7")

    store.wrote(ours)

    assert store.task(TASK_UID) == ours
    assert store.task_uids() == []
