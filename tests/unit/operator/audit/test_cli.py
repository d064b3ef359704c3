"""`opspawn audit` through the top-level `opspawn` command, on a SQLite audit store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from opspawn.cli import main
from opspawn.dev.ports import free_port
from opspawn.operator.audit import AuditStore, Rejected, TaskSnapshot
from tests.unit.operator.audit.builders import (
    NAME,
    NAMESPACE,
    T0,
    UID,
    attempt_events,
    large_text,
)


@pytest.fixture
def populated(store: AuditStore) -> AuditStore:
    store.record_batch(
        [
            *attempt_events(steps=1, exit_code=75, reason="ModelUnavailable", result=None),
            *attempt_events(steps=2, attempt=2, start=T0 + timedelta(minutes=5)),
            *attempt_events(
                steps=1, uid="uid-other", name="other", namespace="team-b", model="gpt-5"
            ),
        ],
        [
            Rejected(
                received_at=T0,
                subject=f"opspawn.events.{NAMESPACE}.{UID}",
                reason="VerificationFailed",
                detail="event signature does not match the task's key",
                task_uid=UID,
                namespace=NAMESPACE,
                excerpt='{"id": "forged"}',
            )
        ],
    )
    for attempt, phase in ((1, "Running"), (2, "Succeeded")):
        store.record_task(
            TaskSnapshot(task_uid=UID, attempt=attempt, namespace=NAMESPACE, name=NAME, phase=phase)
        )
    return store


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["audit", "--database-url", url, *args])


def ok(url: str, *args: str) -> str:
    result = run(url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_list_is_an_aligned_table(populated: AuditStore, url: str) -> None:
    lines = ok(url, "list").splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "ATTEMPT",
        "PHASE",
        "REASON",
        "MODEL",
        "STEPS",
        "TOKENS",
        "COST",
        "STARTED",
        "DURATION",
    ]
    assert len(lines) == 4
    assert lines[1].split() == [
        "team-a",
        "summarise",
        "2",
        "Succeeded",
        "Completed",
        "openai/gpt-4.1-mini",
        "2",
        "240",
        "$0.0020",
        "2026-01-01T12:05:01Z",
        "4.3s",
    ]
    # every column starts at the same place on every line
    for header in ("ATTEMPT", "MODEL", "STARTED"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " for line in lines[1:])


def test_list_filters_and_json(populated: AuditStore, url: str) -> None:
    rows = json.loads(ok(url, "list", "--namespace", "team-a", "--output", "json"))
    assert [(r["task_uid"], r["attempt"]) for r in rows] == [(UID, 2), (UID, 1)]
    rows = json.loads(ok(url, "list", "--phase", "running", "-o", "json"))
    assert [(r["task_uid"], r["attempt"]) for r in rows] == [(UID, 1)]
    rows = json.loads(ok(url, "list", "--model", "gpt-5", "-o", "json"))
    assert [r["task_uid"] for r in rows] == ["uid-other"]
    rows = json.loads(ok(url, "list", "--since", "2026-01-01T12:03:00Z", "-o", "json"))
    assert [(r["task_uid"], r["attempt"]) for r in rows] == [(UID, 2)]
    assert json.loads(ok(url, "list", "--since", "1h", "-o", "json")) == []  # long ago
    assert json.loads(ok(url, "list", "--until", "2026-01-01", "-o", "json")) == []
    assert len(json.loads(ok(url, "list", "--limit", "1", "-o", "json"))) == 1


def test_show_summarises_attempts_usage_and_result(populated: AuditStore, url: str) -> None:
    text = ok(url, "show", f"{NAMESPACE}/{NAME}")
    assert f"UID:       {UID}" in text
    assert "Outcome:   Succeeded (Completed)" in text
    assert "Attempts:  2" in text
    assert "Tokens:    360 total (300 input, 60 output, 30 cached, 15 reasoning)" in text
    assert "Cost:      $0.0030" in text
    assert "ModelUnavailable" in text
    assert "Result (attempt 2, 9 bytes, sha256" in text
    assert text.rstrip().endswith("All done.")

    document = json.loads(ok(url, "show", UID, "-o", "json"))
    assert [a["attempt"] for a in document["attempts"]] == [1, 2]
    assert document["usage"]["total_tokens"] == 360
    assert document["attempts"][1]["result_text"] == "All done."


def test_events_is_the_whole_timeline(populated: AuditStore, url: str) -> None:
    lines = ok(url, "events", f"{NAMESPACE}/{NAME}").splitlines()
    events = [*attempt_events(steps=1, result=None), *attempt_events(steps=2, attempt=2)]
    assert lines[0].split() == ["TIME", "ATTEMPT", "SEQ", "TYPE", "SUMMARY"]
    assert len(lines) == 1 + len(events)
    assert lines[1].split()[:5] == [
        "2026-01-01T12:00:01.000Z",
        "1",
        "1",
        "started",
        "openai/gpt-4.1-mini",
    ]
    assert "llm_call" in lines[3] and "100 in, 20 out, 250ms" in lines[3]
    assert lines[-1].split()[1:] == [
        "2",
        "14",
        "finished",
        "exit",
        "0",
        "Completed,",
        "2",
        "steps,",
        "4.3s",
    ]

    only_second = ok(url, "events", UID, "--attempt", "2").splitlines()
    assert len(only_second) == 1 + 14
    stored = json.loads(ok(url, "events", UID, "-o", "json"))
    assert [(e["attempt"], e["sequence"]) for e in stored] == [
        (e.attempt, e.sequence) for e in events
    ]


def test_export_is_json_lines(populated: AuditStore, url: str) -> None:
    records = [json.loads(line) for line in ok(url, "export", f"{NAMESPACE}/{NAME}").splitlines()]
    kinds = [record["record"] for record in records]
    assert kinds == ["task", "task"] + ["event"] * (len(records) - 2)
    assert records[2]["event_id"] == f"{UID}/1/1"
    assert records[-1]["payload"]["reason"] == "Completed"


def test_security_lists_rejections(populated: AuditStore, url: str) -> None:
    lines = ok(url, "security").splitlines()
    assert lines[0].split() == [
        "RECEIVED",
        "COUNT",
        "REASON",
        "NAMESPACE",
        "TASK",
        "UID",
        "SUBJECT",
        "DETAIL",
    ]
    assert "VerificationFailed" in lines[1] and UID in lines[1]
    (row,) = json.loads(ok(url, "security", "-o", "json"))
    assert row["excerpt"] == '{"id": "forged"}'
    assert json.loads(ok(url, "security", "--namespace", "team-b", "-o", "json")) == []


def test_an_unknown_task_is_an_error(populated: AuditStore, url: str) -> None:
    for command in ("show", "events", "export"):
        result = run(url, command, "team-a/nope")
        assert result.exit_code == 1
        assert "no task team-a/nope" in result.output
        assert "Traceback" not in result.output
    result = run(url, "show", "no-such-uid")
    assert result.exit_code == 1 and "no task with uid no-such-uid" in result.output


def test_an_unreachable_database_is_an_error_without_the_password() -> None:
    url = f"postgresql://audit:hunter2@127.0.0.1:{free_port()}/audit"
    result = run(url, "list")
    assert result.exit_code == 1
    assert "cannot use the audit database postgresql://audit:***@127.0.0.1" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_a_missing_or_empty_database_is_an_error(tmp_path: Path) -> None:
    missing = run(f"sqlite:///{tmp_path / 'missing.db'}", "list")
    assert missing.exit_code == 1 and "there is no audit database at" in missing.output
    assert not (tmp_path / "missing.db").exists()

    AuditStore(f"sqlite:///{tmp_path / 'empty.db'}").close()
    (tmp_path / "empty.db").touch()
    empty = run(f"sqlite:///{tmp_path / 'empty.db'}", "list")
    assert empty.exit_code == 1 and "has no schema yet" in empty.output


def test_a_large_result_shows_whole_and_its_parts_as_short_lines(
    store: AuditStore, url: str
) -> None:
    text = large_text()
    store.record_batch(attempt_events(steps=1, result=text, structured=None))
    lines = ok(url, "events", f"{NAMESPACE}/{NAME}").splitlines()
    parts = [line for line in lines if "result_part" in line]
    assert len(parts) == 6
    assert "part 1/6, 193," in parts[0] and "bytes: 0000000 résumé" in parts[0]
    assert all(len(line) < 250 for line in lines)
    shown = ok(url, "show", UID)
    assert "1,000,000 bytes" in shown
    assert "stored cut" not in shown
    document = json.loads(ok(url, "show", UID, "-o", "json"))
    assert document["attempts"][0]["result_text"] == text
    assert document["attempts"][0]["result_parts"] == 6


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert "at schema revision 0003" in ok(url, "migrate")
    assert ok(url, "list", "-o", "json").strip() == "[]"


def test_a_bad_time_is_a_usage_error(populated: AuditStore, url: str) -> None:
    result = run(url, "list", "--since", "yesterday")
    assert result.exit_code == 2
    assert "neither an ISO time" in result.output


def test_the_database_url_comes_from_the_environment(populated: AuditStore, url: str) -> None:
    result = CliRunner().invoke(main, ["audit", "list", "-o", "json"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3
