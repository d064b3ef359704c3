"""The audit store on a real Postgres: migrations, schema, idempotency, a large batch."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from opspawn.api.events import ResultPartPayload, ResultPayload, StepPayload
from opspawn.cli import main
from opspawn.operator.audit import AuditStore, DeadLetter, Rejected, TaskSnapshot
from opspawn.operator.audit.migrations import alembic_config
from opspawn.operator.audit.schema import VERSION_TABLE, metadata
from tests.unit.operator.audit.builders import (
    NAME,
    NAMESPACE,
    UID,
    attempt_events,
    dump,
    large_text,
    many_events,
    signed,
    usage_after,
)

NOW = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[AuditStore]:
    audit = AuditStore(database_url)
    audit.migrate()
    try:
        yield audit
    finally:
        audit.close()


def test_migrate_on_an_empty_database(database_url: str) -> None:
    store = AuditStore(database_url)
    try:
        assert store.schema_revision() is None
        store.migrate()
        store.migrate()
        assert store.schema_revision() == AuditStore.head_revision()
    finally:
        store.close()
    engine = sa.create_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == {
            "tasks",
            "events",
            "security_events",
            "dead_letters",
            VERSION_TABLE,
        }
        columns = {c["name"]: c for c in inspector.get_columns("events")}
        assert type(columns["payload"]["type"]).__name__ == "JSONB"
        assert getattr(columns["time"]["type"], "timezone", None) is True
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("events")}
        assert indexes["ix_events_task_attempt_sequence"] == ["task_uid", "attempt", "sequence"]
        assert inspector.get_pk_constraint("tasks")["constrained_columns"] == [
            "task_uid",
            "attempt",
        ]
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_metadata(database_url: str) -> None:
    with AuditStore(database_url) as store:
        store.migrate()
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_a_database_at_the_first_revision_migrates_to_head_with_its_rows(
    database_url: str,
) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "insert into tasks (task_uid, attempt, namespace, name, result_text, updated_at)"
                " values ('old', 1, 'team-a', 'old', 'cut…', now())"
            )
        )
    engine.dispose()
    with AuditStore(database_url) as store:
        assert store.schema_revision() == "0001"
        store.migrate()
        assert store.schema_revision() == AuditStore.head_revision() == "0003"
        (old,) = store.attempts("old")
        assert (old.result_text, old.result_parts) == ("cut…", None)
        store.record_batch(attempt_events(steps=1, result=large_text(), structured=None))
        assert store.attempts(UID)[0].result_text == large_text()


def test_racing_migrations_wait_for_each_other(database_url: str) -> None:
    stores = [AuditStore(database_url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def migrate(store: AuditStore) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert stores[0].schema_revision() == AuditStore.head_revision()
    finally:
        for store in stores:
            store.close()


def test_replaying_batches_leaves_the_database_unchanged(
    store: AuditStore, database_url: str
) -> None:
    events = [*attempt_events(steps=3), *attempt_events(steps=2, attempt=2)]
    rejected = [Rejected(received_at=NOW, subject="opspawn.events.a.b", reason="UnknownTask")]
    poison = [DeadLetter(received_at=NOW, subject="x", stream_sequence=7, reason="not JSON")]
    store.record_batch(events, rejected, poison)
    store.record_task(
        TaskSnapshot(
            task_uid=UID,
            attempt=2,
            namespace=NAMESPACE,
            name=NAME,
            phase="Succeeded",
            spec={"goal": "g"},
        )
    )
    before = dump(database_url)

    store.record_batch(events, rejected, poison)
    store.record_batch(events[::-1], rejected * 2, poison)
    store.record_batch(events[5:9])

    after = dump(database_url)
    assert after.pop("security_events") != before.pop("security_events")  # counted per source
    assert after == before
    assert [row.count for row in store.security_events()] == [4]
    first, second = store.attempts(UID)
    assert (first.total_tokens, second.total_tokens) == (
        usage_after(3).total_tokens,
        usage_after(2).total_tokens,
    )
    assert second.phase == "Succeeded" and second.spec == {"goal": "g"}
    assert second.result_structured == {"summary": "All done.", "items": [1, 2, 3]}


def test_a_5000_event_batch_round_trips(
    store: AuditStore, database_url: str, record_property: Callable[[str, object], None]
) -> None:
    events = many_events(5000)
    started = time.perf_counter()
    store.record_batch(events)
    elapsed = time.perf_counter() - started
    record_property("record_batch_5000_seconds", round(elapsed, 3))
    print(f"record_batch of 5000 events on Postgres: {elapsed:.3f}s")

    assert store.count_events() == 5000
    by_task: dict[str, list[str]] = {}
    for event in events:
        by_task.setdefault(event.task_uid, []).append(event.id)
    assert len(by_task) == 11
    for uid, ids in by_task.items():
        stored = list(store.events(uid))
        assert [e.event_id for e in stored] == ids
    sample = {e.id: e for e in events}
    for record in store.events("bulk-0003"):
        original = sample[record.event_id]
        assert record.payload == original.payload.model_dump(mode="json", by_alias=True)
        assert record.time == original.time
        assert (record.type, record.truncated) == (original.type.value, original.truncated)
    assert store.attempts("bulk-0000")[0].total_tokens == usage_after(99).total_tokens
    assert store.attempts("bulk-0000")[0].exit_code == 0

    before = dump(database_url)
    started = time.perf_counter()
    store.record_batch(events)
    print(f"replaying it: {time.perf_counter() - started:.3f}s")
    assert dump(database_url) == before


def test_text_postgres_cannot_store_is_replaced(store: AuditStore) -> None:
    (event,) = signed([StepPayload(step=1, summary="binary\x00tool output")])
    store.record_batch(
        [event],
        [Rejected(received_at=NOW, subject="s\x00", reason="VerificationFailed", detail="\ud800")],
        [
            DeadLetter(
                received_at=NOW, subject="s", stream_sequence=None, reason="r", excerpt="\x00"
            )
        ],
    )
    (stored,) = store.events(UID)
    assert stored.payload["summary"] == "binary\ufffdtool output"
    (rejection,) = store.security_events()
    assert (rejection.subject, rejection.detail) == ("s\ufffd", "\ufffd")


def test_json_is_jsonb_and_times_are_timestamptz(store: AuditStore, postgres_dsn: str) -> None:
    store.record_batch(attempt_events(steps=1))
    with psycopg.connect(postgres_dsn) as connection:
        kinds = connection.execute(
            "select pg_typeof(payload)::text, pg_typeof(time)::text, payload->>'modelProvider' "
            "from events where sequence = 1"
        ).fetchone()
    assert kinds == ("jsonb", "timestamp with time zone", "openai")


@pytest.fixture
def postgres_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


def test_the_cli_reads_postgres(store: AuditStore, postgres_dsn: str) -> None:
    store.record_batch(attempt_events(steps=2))
    runner = CliRunner()
    result = runner.invoke(
        main, ["audit", "--database-url", postgres_dsn, "show", f"{NAMESPACE}/{NAME}"]
    )
    assert result.exit_code == 0, result.output
    assert "Tokens:    240 total" in result.stdout
    result = runner.invoke(main, ["audit", "--database-url", postgres_dsn, "export", UID])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["record"] for line in lines][:2] == ["task", "event"]


def test_a_1_mb_result_is_whole_in_postgres_whatever_the_delivery(
    store: AuditStore, database_url: str
) -> None:
    """Parts out of order, over several batches, each delivered twice; the result event last."""
    text = large_text()
    events = attempt_events(steps=2, result=text, structured=None)
    (result,) = [e for e in events if isinstance(e.payload, ResultPayload)]
    parts = [e for e in events if isinstance(e.payload, ResultPartPayload)]
    others = [e for e in events if e is not result and e not in parts]
    assert result.truncated and len(parts) == 6
    assert isinstance(result.payload, ResultPayload)
    shuffled = parts * 2
    random.Random(3).shuffle(shuffled)  # noqa: S311 - a reproducible shuffle, not a secret

    store.record_batch(others)
    store.record_batch(shuffled[:4])
    assert store.attempts(UID)[0].result_text is None  # some parts are still missing
    store.record_batch(shuffled[4:9])
    store.record_batch(shuffled[9:])
    unchecked = store.attempts(UID)[0]
    assert (unchecked.result_text, unchecked.result_sha256) == (text, None)
    store.record_batch([result, *parts[:2]])

    (row,) = store.attempts(UID)
    assert row.result_text == text
    assert row.result_parts == 6
    assert row.result_sha256 == result.payload.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert row.result_size_bytes == len(text.encode())
    assert row.exit_code == 0
    before = dump(database_url)
    store.record_batch(events[::-1])
    store.record_batch(parts)
    assert dump(database_url) == before

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as pg:
        stored = pg.execute(
            "select length(result_text), octet_length(result_text), result_parts from tasks"
        ).fetchone()
    assert stored == (len(text), len(text.encode()), 6)


def test_a_large_structured_result_is_restored_whole_in_postgres(store: AuditStore) -> None:
    structured = {"lines": large_text().splitlines(), "count": 1}
    text = json.dumps(structured, ensure_ascii=False)
    events = attempt_events(steps=1, result=text, structured=structured)
    store.record_batch(events[len(events) // 2 :])
    store.record_batch(events[: len(events) // 2])
    (row,) = store.attempts(UID)
    assert row.result_text == text
    assert row.result_structured == structured
