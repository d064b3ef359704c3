"""The audit writer: what the reconcile decided reaches the audit store, however long the
store is away, and suspicious objects are reported once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opspawn.operator.audit import AuditStore, TaskSnapshot
from opspawn.operator.audit_writer import AuditWriter, merged, object_security_event

pytestmark = pytest.mark.anyio

FINISHED = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


class FlakyStore(AuditStore):
    """A real SQLite store that refuses every write while `down` (as Postgres does when away)."""

    down = True

    def record_task(self, snapshot: TaskSnapshot) -> None:
        if self.down:
            raise ConnectionError("the database is away")
        super().record_task(snapshot)

    def record_batch(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionError("the database is away")
        super().record_batch(*args, **kwargs)


def _snapshot(**fields: object) -> TaskSnapshot:
    return TaskSnapshot(task_uid="uid-1", attempt=1, namespace="ns", name="t", **fields)  # type: ignore[arg-type]


def test_a_newer_snapshot_fills_in_without_erasing_what_an_older_one_knew() -> None:
    older = _snapshot(phase="Running", model_name="m", spec={"goal": "g"})

    both = merged(older, _snapshot(phase="Succeeded", finished_at=FINISHED))

    assert (both.phase, both.model_name, both.finished_at) == ("Succeeded", "m", FINISHED)
    assert both.spec == {"goal": "g"}


async def test_a_final_phase_recorded_during_an_outage_is_written_once_the_store_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opspawn.operator.audit_writer.RETRY_SECONDS", (0.05,))
    store = FlakyStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    writer = AuditWriter(store)
    running = asyncio.create_task(writer.run())
    try:
        writer.snapshot(_snapshot(phase="Running"))
        writer.snapshot(_snapshot(phase="Succeeded", reason="Completed", finished_at=FINISHED))
        await asyncio.sleep(0.3)  # several refused writes
        assert writer.pending == 1
        assert store.attempts("uid-1") == []

        store.down = False
        await asyncio.wait_for(writer.drained(), 5)
    finally:
        running.cancel()
        store.close()

    [attempt] = FlakyStore(f"sqlite:///{tmp_path / 'audit.db'}").attempts("uid-1")
    assert (attempt.phase, attempt.reason, attempt.finished_at) == (
        "Succeeded",
        "Completed",
        FINISHED,
    )


async def test_a_suspicious_object_is_reported_once(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    writer = AuditWriter(store)
    running = asyncio.create_task(writer.run())
    metadata = {"namespace": "attacker", "name": "j", "uid": "job-uid", "labels": {"a": "b"}}
    try:
        for _ in range(3):
            writer.security_event(
                "job-uid",
                object_security_event("Job", metadata, "CrossNamespaceOwner", "ignored", "victim"),
            )
        await asyncio.wait_for(writer.drained(), 5)
        [event] = store.security_events()
    finally:
        running.cancel()
        store.close()
    assert (event.reason, event.task_uid, event.namespace) == (
        "CrossNamespaceOwner",
        "victim",
        "attacker",
    )
    assert event.subject == "kubernetes:Job/attacker/j"


async def test_at_start_attempts_of_tasks_deleted_meanwhile_are_closed(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    for uid, namespace in (("gone", "ns"), ("here", "ns"), ("elsewhere", "other")):
        store.record_task(
            TaskSnapshot(task_uid=uid, attempt=1, namespace=namespace, name=uid, phase="Running")
        )
    writer = AuditWriter(store)
    running = asyncio.create_task(writer.run())
    try:
        told: list[tuple[str, str, str]] = []
        await writer.close_vanished(
            lambda uid: uid == "here",
            ["ns"],
            FINISHED,
            vanished=lambda *deleted: told.append(deleted),
        )
        await asyncio.wait_for(writer.drained(), 5)
        phases = {uid: store.attempts(uid)[0] for uid in ("gone", "here", "elsewhere")}
    finally:
        running.cancel()
        store.close()
    assert (phases["gone"].phase, phases["gone"].reason) == ("Cancelled", "TaskDeleted")
    assert phases["gone"].finished_at == FINISHED
    assert phases["here"].phase == "Running"
    assert phases["elsewhere"].phase == "Running"  # another operator's namespace
    assert told == [("gone", "ns", "gone")]
