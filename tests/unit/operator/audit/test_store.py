"""The audit store's writes and reads, on SQLite (the same code runs on Postgres)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from pydantic import JsonValue

from opspawn.api.events import (
    ResultPartPayload,
    ResultPayload,
    RunnerEvent,
    StepPayload,
    UsagePayload,
)
from opspawn.operator.audit import (
    AuditStore,
    AuditStoreError,
    DeadLetter,
    Rejected,
    TaskRecord,
    TaskSnapshot,
)
from opspawn.operator.audit.migrations import alembic_config
from opspawn.operator.audit.records import EXCERPT_MAX_CHARS
from opspawn.operator.audit.store import normalise_url, redact_url
from tests.unit.operator.audit.builders import (
    NAME,
    NAMESPACE,
    STRUCTURED,
    T0,
    UID,
    attempt_events,
    dump,
    large_text,
    signed,
    usage_after,
)

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def without_updated_at(record: TaskRecord) -> TaskRecord:
    return dataclasses.replace(record, updated_at=T0)


def only_attempt(store: AuditStore, uid: str = UID) -> TaskRecord:
    (attempt,) = store.attempts(uid)
    return attempt


# --------------------------------------------------------------------------- schema


def test_migrate_creates_the_schema_once(url: str) -> None:
    store = AuditStore(url)
    try:
        assert store.schema_revision() is None
        store.migrate()
        assert store.schema_revision() == AuditStore.head_revision() == "0003"
        store.migrate()
        assert store.schema_revision() == "0003"
    finally:
        store.close()


def test_a_database_at_the_first_revision_is_migrated_with_its_rows(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "insert into tasks (task_uid, attempt, namespace, name, result_text, updated_at)"
                " values ('old', 1, 'team-a', 'old', 'cut…', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    with AuditStore(url) as store:
        assert store.schema_revision() == "0001"
        store.migrate()
        assert store.schema_revision() == "0003"
        (old,) = store.attempts("old")
        assert (old.result_text, old.result_parts) == ("cut…", None)


# --------------------------------------------------------------------------- idempotency


def test_replaying_a_batch_leaves_the_database_unchanged(store: AuditStore, url: str) -> None:
    events = attempt_events(steps=3)
    rejected = [Rejected(received_at=NOW, subject="opspawn.events.x.y", reason="UnknownTask")]
    poison = [DeadLetter(received_at=NOW, subject="x", stream_sequence=9, reason="not JSON")]
    store.record_batch(events, rejected, poison)
    before = dump(url)

    store.record_batch(events, rejected, poison)
    store.record_batch(list(reversed(events)), rejected * 2)

    after = dump(url)
    assert after.pop("security_events") != before.pop("security_events")  # counted, see below
    assert after == before
    assert len(before["events"]) == len(events) == store.count_events(UID)
    assert len(before["tasks"]) == 1
    assert len(before["dead_letters"]) == 1
    (aggregated,) = store.security_events()
    assert aggregated.count == 4  # rejections are counted per source, not deduplicated


def test_rejections_of_one_source_within_a_window_are_one_counted_row(
    store: AuditStore,
) -> None:
    first = Rejected(
        received_at=NOW,
        subject="opspawn.events.team-a.uid-1",
        reason="VerificationFailed",
        namespace="team-a",
        task_uid="uid-1",
        excerpt="first",
    )
    store.record_batch([], [first] * 3)
    store.record_batch([], [dataclasses.replace(first, received_at=NOW + timedelta(seconds=30))])
    store.record_batch([], [dataclasses.replace(first, task_uid="uid-2")])  # another source

    rows = sorted(store.security_events(), key=lambda row: row.count)
    assert [(row.task_uid, row.count) for row in rows] == [("uid-2", 1), ("uid-1", 4)]
    assert rows[1].excerpt == "first"
    assert (rows[1].received_at, rows[1].last_received_at) == (NOW, NOW + timedelta(seconds=30))


def test_the_next_window_starts_a_new_row(store: AuditStore) -> None:
    first = Rejected(received_at=NOW, subject="s", reason="VerificationFailed", task_uid="u")
    store.record_batch([], [first])
    store.record_batch([], [dataclasses.replace(first, received_at=NOW + timedelta(minutes=2))])

    assert [row.count for row in store.security_events()] == [1, 1]


def test_a_flood_of_made_up_tasks_adds_one_row_per_window(store: AuditStore) -> None:
    """Subject, namespace and uid of an unknown task are the sender's invention."""
    junk = [
        Rejected(
            received_at=NOW,
            subject=f"opspawn.events.ns-{i}.uid-{i}",
            reason="UnknownTask",
            namespace=f"ns-{i}",
            task_uid=f"uid-{i}",
        )
        for i in range(500)
    ]
    store.record_batch([], junk[:250])
    store.record_batch([], junk[250:])

    (row,) = store.security_events()
    assert row.count == 500
    assert row.reason == "UnknownTask"


def test_prune_removes_rejections_and_dead_letters_by_age_and_keeps_the_rest(
    store: AuditStore,
) -> None:
    old = Rejected(received_at=NOW, subject="s", reason="VerificationFailed", task_uid="u")
    recent = dataclasses.replace(old, received_at=NOW + timedelta(days=10), task_uid="v")
    store.record_batch(
        attempt_events(steps=2),
        [old, recent],
        [DeadLetter(received_at=NOW, subject="x", stream_sequence=1, reason="not JSON")],
    )

    pruned = store.prune(NOW + timedelta(days=1))

    assert (pruned.security_events, pruned.dead_letters, pruned.attempts) == (1, 1, 0)
    assert [row.task_uid for row in store.security_events()] == ["v"]
    assert store.count_events(UID) > 0  # attempts are kept unless asked for


def test_prune_of_attempts_removes_only_finished_ones_with_their_events(
    store: AuditStore,
) -> None:
    store.record_batch(attempt_events(steps=2))
    store.record_batch(attempt_events(steps=1, attempt=2))
    finished = NOW - timedelta(days=40)
    store.record_task(
        TaskSnapshot(
            task_uid=UID,
            attempt=1,
            namespace="team-a",
            name="t",
            phase="Failed",
            finished_at=finished,
        )
    )
    store.record_task(
        TaskSnapshot(task_uid=UID, attempt=2, namespace="team-a", name="t", phase="Running")
    )

    pruned = store.prune(NOW, attempts=True)

    assert pruned.attempts == 1 and pruned.events > 0
    assert [a.attempt for a in store.attempts(UID)] == [2]
    assert {e.attempt for e in store.events(UID)} == {2}


def test_duplicates_inside_one_batch_are_stored_once(store: AuditStore) -> None:
    events = attempt_events(steps=2)
    store.record_batch([*events, *events, events[0]])
    assert store.count_events() == len(events)
    assert only_attempt(store).total_tokens == usage_after(2).total_tokens


def test_a_redelivered_older_usage_event_does_not_roll_the_totals_back(store: AuditStore) -> None:
    events = attempt_events(steps=3)
    usage = [e for e in events if isinstance(e.payload, UsagePayload)]
    latest = usage[-1]
    store.record_batch([e for e in events if e not in usage[:-1]])
    assert only_attempt(store).total_tokens == usage_after(3).total_tokens

    store.record_batch(usage[:-1])  # the older ones arrive late, in a batch of their own

    attempt = only_attempt(store)
    assert attempt.total_tokens == usage_after(3).total_tokens
    assert attempt.usage_sequence == latest.sequence
    assert store.count_events() == len(events)


def test_any_split_into_batches_in_any_order_gives_the_same_task_row(tmp_path: Path) -> None:
    events = [*attempt_events(steps=4), *attempt_events(steps=2, attempt=2)]
    expected: list[TaskRecord] | None = None
    shuffler = random.Random(7)  # noqa: S311 - a reproducible shuffle, not a secret
    for trial in range(6):
        store = AuditStore(f"sqlite:///{tmp_path / f'trial-{trial}.db'}")
        store.migrate()
        order = list(events)
        if trial:
            shuffler.shuffle(order)
        cuts = sorted(shuffler.sample(range(1, len(order)), 4)) if trial else []
        for start, end in zip([0, *cuts], [*cuts, len(order)], strict=True):
            store.record_batch(order[start:end])
        rows = [without_updated_at(row) for row in store.attempts(UID)]
        store.close()
        if expected is None:
            expected = rows
        assert rows == expected, f"trial {trial}"


# --------------------------------------------------------------------------- aggregation


def test_the_task_row_aggregates_the_attempts_events(store: AuditStore) -> None:
    events = attempt_events(steps=3)
    store.record_batch(events)

    attempt = only_attempt(store)
    started, finished = events[0], events[-1]
    result = next(e.payload for e in events if isinstance(e.payload, ResultPayload))
    assert (attempt.namespace, attempt.name, attempt.attempt) == (NAMESPACE, NAME, 1)
    assert (attempt.model_provider, attempt.model_name, attempt.pod_name) == (
        "openai",
        "gpt-4.1-mini",
        "pod-1",
    )
    assert attempt.started_at == started.time
    assert attempt.finished_at == finished.time
    assert (attempt.exit_code, attempt.reason, attempt.steps, attempt.duration_ms) == (
        0,
        "Completed",
        3,
        4321,
    )
    usage = usage_after(3)
    assert (
        attempt.input_tokens,
        attempt.output_tokens,
        attempt.cached_tokens,
        attempt.reasoning_tokens,
        attempt.total_tokens,
    ) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        usage.total_tokens,
    )
    assert attempt.cost_usd == pytest.approx(0.003)
    assert attempt.result_text == "All done."
    assert attempt.result_structured == STRUCTURED
    assert attempt.result_sha256 == result.sha256
    assert attempt.result_size_bytes == len(b"All done.")
    assert attempt.phase is None  # only the operator knows the phase
    assert attempt.started_at is not None and attempt.started_at.tzinfo is not None


def test_steps_only_grow(store: AuditStore) -> None:
    step5, step2 = signed([StepPayload(step=5), StepPayload(step=2)])
    store.record_batch([step5])
    store.record_batch([step2])
    assert only_attempt(store).steps == 5


def test_attempts_are_separate_rows(store: AuditStore) -> None:
    store.record_batch(
        [
            *attempt_events(steps=1, exit_code=75, reason="ModelUnavailable", result=None),
            *attempt_events(steps=2, attempt=2, start=T0 + timedelta(minutes=5)),
        ]
    )
    first, second = store.attempts(UID)
    assert (first.attempt, first.exit_code, first.result_text, first.steps) == (1, 75, None, 1)
    assert (second.attempt, second.exit_code, second.result_text, second.steps) == (
        2,
        0,
        "All done.",
        2,
    )


# --------------------------------------------------------------------------- large results

BIG = large_text()


def big_result_events(
    **options: object,
) -> tuple[list[RunnerEvent], RunnerEvent, list[RunnerEvent]]:
    """A whole attempt with a 1 MB result: (all its events, the result event, its parts)."""
    events = attempt_events(steps=2, result=BIG, structured=None, **options)
    (result,) = [e for e in events if isinstance(e.payload, ResultPayload)]
    parts = [e for e in events if isinstance(e.payload, ResultPartPayload)]
    return events, result, parts


def test_a_1_mb_result_is_reassembled_from_its_parts(store: AuditStore) -> None:
    events, result, parts = big_result_events()
    assert result.truncated and len(parts) == 6
    assert isinstance(result.payload, ResultPayload)

    store.record_batch(events)

    row = only_attempt(store)
    assert row.result_text == BIG
    assert row.result_parts == 6
    assert row.result_sha256 == result.payload.sha256
    assert row.result_size_bytes == len(BIG.encode())
    assert row.result_sequence == result.sequence
    assert row.exit_code == 0
    # the events themselves are stored as sent: the cut result and the parts
    stored = {e.event_id: e for e in store.events(UID)}
    assert stored[result.id].payload["text"] != BIG
    assert stored[result.id].truncated
    assert "".join(stored[p.id].payload["text"] for p in parts) == BIG


def test_parts_out_of_order_over_batches_and_twice_give_the_same_row(tmp_path: Path) -> None:
    events, result, parts = big_result_events()
    reference = AuditStore(f"sqlite:///{tmp_path / 'reference.db'}")
    reference.migrate()
    reference.record_batch(events)
    expected = without_updated_at(only_attempt(reference))
    reference.close()
    assert expected.result_text == BIG

    shuffler = random.Random(11)  # noqa: S311 - a reproducible shuffle, not a secret
    for trial in range(5):
        url = f"sqlite:///{tmp_path / f'trial-{trial}.db'}"
        store = AuditStore(url)
        store.migrate()
        order = [*events, *events]  # every event delivered twice
        shuffler.shuffle(order)
        cuts = sorted(shuffler.sample(range(1, len(order)), 6))
        for start, end in zip([0, *cuts], [*cuts, len(order)], strict=True):
            store.record_batch(order[start:end])
        assert without_updated_at(only_attempt(store)) == expected, f"trial {trial}"
        before = dump(url)
        store.record_batch(parts[::-1])
        store.record_batch([result, *parts])
        assert dump(url) == before, f"trial {trial}: a replay changed something"
        store.close()


def test_parts_before_their_result_are_checked_when_it_arrives(store: AuditStore) -> None:
    _, result, parts = big_result_events()
    store.record_batch(parts[3:])
    assert only_attempt(store).result_text is None  # incomplete: nothing to show yet
    store.record_batch(parts[:3])
    row = only_attempt(store)
    assert (row.result_text, row.result_parts, row.result_sha256) == (BIG, 6, None)

    store.record_batch([result])

    row = only_attempt(store)
    assert (row.result_text, row.result_parts) == (BIG, 6)
    assert isinstance(result.payload, ResultPayload)
    assert row.result_sha256 == result.payload.sha256


def test_until_every_part_is_there_the_cut_result_stays(store: AuditStore) -> None:
    events, result, parts = big_result_events()
    assert isinstance(result.payload, ResultPayload)
    store.record_batch([e for e in events if e.id != parts[2].id])
    row = only_attempt(store)
    assert row.result_text == result.payload.text
    assert row.result_parts is None

    store.record_batch([parts[2]])

    assert only_attempt(store).result_text == BIG


def test_parts_that_do_not_match_the_digest_leave_the_cut_result(store: AuditStore) -> None:
    events, result, parts = big_result_events()
    assert isinstance(result.payload, ResultPayload)
    forged = [
        signed(
            [ResultPartPayload(index=i, count=len(parts), text=p.text.replace("ok", "KO"))],
            first_sequence=part.sequence,
        )[0]
        for i, part in enumerate(parts)
        if isinstance(p := part.payload, ResultPartPayload)
    ]
    store.record_batch([e for e in events if e not in parts] + forged)
    row = only_attempt(store)
    assert (row.result_text, row.result_parts) == (result.payload.text, None)


def test_parts_older_than_the_result_do_not_belong_to_it(store: AuditStore) -> None:
    stray = signed([ResultPartPayload(index=0, count=1, text="stray")])
    store.record_batch(stray)
    assert (only_attempt(store).result_text, only_attempt(store).result_parts) == ("stray", 1)
    # a cut result after it: the stray part precedes it, so it carries none of its text
    (result,) = signed([ResultPayload.of(BIG)], first_sequence=2)
    store.record_batch([result])
    row = only_attempt(store)
    assert row.result_parts is None
    assert isinstance(result.payload, ResultPayload)
    assert row.result_text == result.payload.text


def test_a_large_structured_result_is_restored_whole(store: AuditStore) -> None:
    lines: list[JsonValue] = [*BIG.splitlines()]
    structured: JsonValue = {"lines": lines}
    text = json.dumps(structured, ensure_ascii=False)
    events = attempt_events(steps=1, result=text, structured=structured)
    (result,) = [e for e in events if isinstance(e.payload, ResultPayload)]
    assert result.truncated
    store.record_batch(events[::-1])
    row = only_attempt(store)
    assert row.result_text == text
    assert row.result_structured == structured
    assert row.result_parts is not None and row.result_parts > 1


# --------------------------------------------------------------------------- snapshots


def snapshot(**changes: object) -> TaskSnapshot:
    base = TaskSnapshot(task_uid=UID, attempt=1, namespace=NAMESPACE, name=NAME)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_snapshot_never_erases_what_the_events_filled(store: AuditStore) -> None:
    store.record_batch(attempt_events(steps=3))
    before = only_attempt(store)

    store.record_task(snapshot(phase="Succeeded", spec={"goal": "Summarise"}))

    after = only_attempt(store)
    assert after.phase == "Succeeded"
    assert after.spec == {"goal": "Summarise"}
    assert dataclasses.replace(after, phase=None, spec=None, updated_at=before.updated_at) == before


def test_snapshot_and_events_give_the_same_row_in_either_order(tmp_path: Path) -> None:
    events = attempt_events(steps=2)
    operator_view = snapshot(
        model_provider="openai",
        model_name="requested-model",
        phase="Succeeded",
        reason="Succeeded",
        exit_code=0,
        started_at=T0 - timedelta(seconds=30),
        finished_at=T0 + timedelta(hours=1),
        spec={"goal": "Summarise", "model": {"provider": "openai"}},
    )
    rows = []
    for name, steps in (("events-first", ("events", "task")), ("task-first", ("task", "events"))):
        store = AuditStore(f"sqlite:///{tmp_path / name}.db")
        store.migrate()
        for step in steps:
            if step == "events":
                store.record_batch(events)
            else:
                store.record_task(operator_view)
        rows.append(without_updated_at(only_attempt(store)))
        store.close()
    assert rows[0] == rows[1]
    row = rows[0]
    # what the runner observed wins ...
    assert row.model_name == "gpt-4.1-mini"
    assert row.started_at == events[0].time
    assert row.finished_at == events[-1].time
    # ... the operator's outcome wins
    assert (row.phase, row.reason, row.exit_code) == ("Succeeded", "Succeeded", 0)
    assert row.spec == operator_view.spec


def test_a_snapshot_alone_makes_a_row_and_fills_gaps_later(store: AuditStore) -> None:
    store.record_task(snapshot(phase="Queued", model_provider="openai", model_name="m"))
    row = only_attempt(store)
    assert (row.phase, row.model, row.steps, row.total_tokens, row.cost_usd) == (
        "Queued",
        "openai/m",
        0,
        0,
        None,
    )
    store.record_task(snapshot(phase="Failed", reason="RunnerLost", exit_code=137))
    store.record_batch(attempt_events(steps=1, exit_code=0, reason="Completed"))
    row = only_attempt(store)
    assert (row.phase, row.reason, row.exit_code) == ("Failed", "RunnerLost", 137)


# --------------------------------------------------------------------------- rejections


def test_rejections_and_dead_letters_are_stored_bounded_and_clean(store: AuditStore) -> None:
    store.record_batch(
        [],
        [
            Rejected(
                received_at=NOW,
                subject="opspawn.events.team-a.abc",
                reason="VerificationFailed",
                detail="event signature does not match the task's key",
                task_uid="abc",
                namespace="team-a",
                excerpt="x" * 10_000 + "\x00",
            )
        ],
        [
            DeadLetter(
                received_at=NOW, subject="s", stream_sequence=42, reason="not JSON", excerpt="\x00"
            )
        ],
    )
    (rejection,) = store.security_events()
    assert rejection.reason == "VerificationFailed"
    assert (rejection.namespace, rejection.task_uid, rejection.event_id) == ("team-a", "abc", None)
    assert rejection.excerpt == "x" * EXCERPT_MAX_CHARS
    assert rejection.received_at == NOW


def test_text_postgres_cannot_store_is_replaced(store: AuditStore) -> None:
    # NUL is valid JSON text (a tool may read a binary file) but Postgres stores it nowhere;
    # a lone surrogate cannot be signed, so only a rejection's detail could carry one.
    (event,) = signed([StepPayload(step=1, summary="nul\x00 inside")])
    lone = Rejected(received_at=NOW, subject="s", reason="VerificationFailed", detail="\ud800!")
    store.record_batch([event], [lone])
    (stored,) = store.events(UID)
    assert stored.payload["summary"] == "nul\ufffd inside"
    assert store.security_events()[0].detail == "\ufffd!"


def test_an_event_no_column_can_hold_becomes_a_security_event(store: AuditStore) -> None:
    (ok,) = signed([StepPayload(step=1)])
    (huge,) = signed([StepPayload(step=2)], first_sequence=2**63)
    store.record_batch([ok, huge])
    assert [e.event_id for e in store.events(UID)] == [ok.id]
    (rejection,) = store.security_events()
    assert (rejection.reason, rejection.event_id) == ("Unstorable", huge.id)


# --------------------------------------------------------------------------- reads


@pytest.fixture
def history(store: AuditStore) -> AuditStore:
    """Four tasks: two in team-a (one renamed-and-reused name), one in team-b, one queued."""
    store.record_batch(attempt_events(steps=1, uid="uid-a1", name="alpha", start=T0))
    store.record_batch(
        attempt_events(steps=1, uid="uid-a2", name="alpha", start=T0 + timedelta(days=2))
    )
    store.record_batch(
        attempt_events(
            steps=2,
            uid="uid-b",
            name="beta",
            namespace="team-b",
            provider="anthropic",
            model="claude",
            start=T0 + timedelta(days=1),
        )
    )
    for uid, phase in (("uid-a1", "Succeeded"), ("uid-a2", "Failed"), ("uid-b", "Succeeded")):
        row = store.attempts(uid)[0]
        store.record_task(
            TaskSnapshot(
                task_uid=uid, attempt=1, namespace=row.namespace, name=row.name, phase=phase
            )
        )
    return store


def uids(rows: list[TaskRecord]) -> list[str]:
    return [row.task_uid for row in rows]


def test_list_tasks_filters_and_orders(history: AuditStore) -> None:
    assert uids(history.list_tasks()) == ["uid-a2", "uid-b", "uid-a1"]
    assert uids(history.list_tasks(namespace="team-a")) == ["uid-a2", "uid-a1"]
    assert uids(history.list_tasks(phase="succeeded")) == ["uid-b", "uid-a1"]
    assert uids(history.list_tasks(model="claude")) == ["uid-b"]
    assert uids(history.list_tasks(model="anthropic/claude")) == ["uid-b"]
    assert uids(history.list_tasks(model="openai/claude")) == []
    since = T0 + timedelta(hours=12)
    assert uids(history.list_tasks(since=since)) == ["uid-a2", "uid-b"]
    assert uids(history.list_tasks(since=since, until=T0 + timedelta(days=2))) == ["uid-b"]
    assert uids(history.list_tasks(limit=1)) == ["uid-a2"]


def test_a_task_is_found_by_name_or_uid(history: AuditStore) -> None:
    assert history.task_uids("team-a", "alpha") == ["uid-a2", "uid-a1"]
    assert uids(history.attempts(namespace="team-a", name="alpha")) == ["uid-a2"]
    assert uids(history.attempts("uid-a1")) == ["uid-a1"]
    assert history.attempts(namespace="team-a", name="nope") == []
    with pytest.raises(ValueError, match="namespace and a name"):
        history.attempts(namespace="team-a")


def test_events_come_back_in_attempt_and_sequence_order(store: AuditStore) -> None:
    first = attempt_events(steps=1)
    second = attempt_events(steps=1, attempt=2)
    store.record_batch([*reversed(second), *reversed(first)])
    stored = list(store.events(UID))
    assert [(e.attempt, e.sequence) for e in stored] == [
        (e.attempt, e.sequence) for e in [*first, *second]
    ]
    assert [e.payload for e in stored] == [
        e.payload.model_dump(mode="json", by_alias=True) for e in [*first, *second]
    ]
    assert [e.time for e in stored] == [e.time for e in [*first, *second]]
    assert [e.sequence for e in store.events(UID, attempt=2)] == [e.sequence for e in second]


def test_export_is_json_lines_material(store: AuditStore) -> None:
    events = attempt_events(steps=1)
    store.record_batch(events)
    store.record_task(snapshot(phase="Succeeded", spec={"goal": "g"}))
    records = list(store.export_task(UID))
    assert [r["record"] for r in records] == ["task"] + ["event"] * len(events)
    assert records[0]["started_at"] == "2026-01-01T12:00:01.000000Z"
    assert records[0]["spec"] == {"goal": "g"}
    assert records[1]["event_id"] == events[0].id
    assert json.loads(json.dumps(records)) == records


# --------------------------------------------------------------------------- URLs, lifetime


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///relative/audit.db", "sqlite:///relative/audit.db"),
        ("sqlite:////abs/audit.db", "sqlite:////abs/audit.db"),
    ],
)
def test_urls_are_normalised(given: str, expected: str) -> None:
    assert normalise_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "not a url", "sqlite+aiosqlite:///x"]
)
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(AuditStoreError):
        normalise_url(url)


def test_the_password_is_never_shown() -> None:
    store = AuditStore("postgresql://audit:hunter2@127.0.0.1:1/audit")
    try:
        assert "hunter2" not in repr(store)
        assert "hunter2" not in store.url
        assert "***" in redact_url("postgres://audit:hunter2@h/db")
    finally:
        store.close()


def test_a_reader_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(AuditStoreError, match="no audit database"):
        AuditStore(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    assert not (tmp_path / "missing.db").exists()
    with AuditStore(f"sqlite:///{tmp_path / 'new' / 'audit.db'}") as store:
        store.migrate()
    assert (tmp_path / "new" / "audit.db").exists()


def test_concurrent_writers_from_worker_threads(store: AuditStore) -> None:
    """What the consumer does: record_batch in asyncio.to_thread, here several at once."""
    batches = [attempt_events(steps=5, uid=f"uid-{n}") for n in range(4)]

    async def write_all() -> None:
        await asyncio.gather(
            *(asyncio.to_thread(store.record_batch, batch) for batch in batches * 3)
        )

    asyncio.run(write_all())
    assert store.count_events() == sum(len(batch) for batch in batches)
    assert {row.total_tokens for row in store.list_tasks()} == {usage_after(5).total_tokens}
