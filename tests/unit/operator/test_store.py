"""The store: every task and runner Job as last seen, never replaced by an older view."""

from __future__ import annotations

from opspawn.operator.store import Store, newer_or_same
from tests.unit.operator.builders import NAMESPACE, TASK_NAME, TASK_UID, job, task

OTHER_UID = "9a8b7c6d-0000-1111-2222-333344445555"


def test_an_empty_store_knows_nothing() -> None:
    store = Store()

    assert store.tasks() == []
    assert store.task(TASK_UID) is None
    assert store.jobs(task()) == []


def test_the_initial_list_fills_it() -> None:
    listed, attempt = task(resource_version="100"), job(1)
    store = Store()

    store.load([listed], [attempt])

    assert store.tasks() == [listed]
    assert store.task(OTHER_UID) is None
    assert store.jobs(listed) == [attempt]
    assert store.jobs(task(uid=OTHER_UID)) == []


def test_a_newer_view_replaces_an_older_one_and_not_the_other_way_round() -> None:
    store = Store()
    ours = task(status={"phase": "Pending"}, resource_version="101")

    store.put_task(task(resource_version="100"))
    store.put_task(ours)
    store.put_task(task(resource_version="99"))  # a watch event older than our own write

    assert store.task(TASK_UID) == ours


def test_the_initial_list_does_not_undo_newer_watch_events() -> None:
    store = Store()
    watched = task(status={"phase": "Running"}, resource_version="205")
    store.put_task(watched)

    store.load([task(resource_version="200")], [])

    assert store.task(TASK_UID) == watched


def test_resource_versions_compare_as_numbers_not_text() -> None:
    assert newer_or_same("1000", "999")
    assert not newer_or_same("999", "1000")
    assert newer_or_same("abc", "1000")  # not a number: the latest delivered wins


def test_a_deleted_task_is_not_brought_back_by_a_racing_write_or_list() -> None:
    store = Store()
    store.put_task(task(resource_version="100"))

    store.delete_task(TASK_UID)
    store.put_task(task(status={"phase": "Running"}, resource_version="101"))
    store.load([task(resource_version="100")], [])

    assert store.task(TASK_UID) is None


def test_jobs_are_kept_per_task_and_attempt() -> None:
    store = Store()
    first, second = job(1), job(2)

    store.put_job(first)
    store.put_job(second)
    store.put_job(job(1, active=0, complete=True, resource_version="0"))  # older: ignored

    assert sorted(j.attempt for j in store.jobs(task())) == [1, 2]
    assert store.jobs(task())[0] == first


def test_a_deleted_job_is_gone_and_stays_gone() -> None:
    store = Store()
    attempt = job(1)
    store.put_job(attempt)

    store.delete_job(attempt)
    store.put_job(attempt)

    assert store.jobs(task()) == []


def test_a_job_labelled_as_a_tasks_but_not_controlled_by_it_is_not_the_tasks() -> None:
    store = Store()
    forged = job(1, owner_uid="")

    store.put_job(forged)
    store.put_job(job(2, owner_uid=OTHER_UID))  # controlled by another task, labelled as ours

    assert forged.forged
    assert store.jobs(task()) == []


def test_a_job_controlled_from_another_namespace_is_foreign_not_the_tasks() -> None:
    store = Store()
    elsewhere = job(1, namespace="attacker")
    store.put_job(elsewhere)

    assert store.jobs(task()) == []
    assert store.foreign_jobs(task()) == [elsewhere]


def test_a_deleted_task_is_remembered_with_its_namespace_and_name() -> None:
    store = Store()
    store.put_task(task())

    assert store.delete_task(TASK_UID) == task()

    assert store.deleted_task(TASK_UID, NAMESPACE) == TASK_NAME
    assert store.deleted_task(TASK_UID, "another-namespace") is None
    assert store.deleted_task(OTHER_UID, NAMESPACE) is None


def test_a_task_deleted_while_no_operator_ran_can_be_remembered() -> None:
    store = Store()
    store.put_task(task())

    store.remember_deleted(OTHER_UID, NAMESPACE, "gone")
    store.remember_deleted(TASK_UID, NAMESPACE, TASK_NAME)  # present: not deleted

    assert store.deleted_task(OTHER_UID, NAMESPACE) == "gone"
    assert store.deleted_task(TASK_UID, NAMESPACE) is None
    assert store.task(TASK_UID) == task()
