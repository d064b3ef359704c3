"""Bounded audit on a real Postgres: a flood of rejected input stays a handful of counted rows,
and `opspawn audit prune`, run as a user runs it (the installed console script, DATABASE_URL
from the environment), removes what is older than asked and nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opspawn.operator.audit import AuditStore, DeadLetter, Rejected, TaskSnapshot
from tests.unit.operator.audit.builders import NAME, NAMESPACE, UID, attempt_events

LONG_AGO = datetime.now(UTC) - timedelta(days=45)


def _opspawn(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("opspawn", path=str(Path(sys.executable).parent))
    assert script is not None, "the opspawn console script is not installed in this venv"
    return subprocess.run(
        [script, *args],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_flood_of_junk_adds_a_row_per_source_and_minute(database_url: str) -> None:
    with AuditStore(database_url) as store:
        store.migrate()
        now = datetime.now(UTC)
        for batch in range(20):
            store.record_batch(
                [],
                [
                    Rejected(
                        received_at=now,
                        subject=f"opspawn.events.ns-{batch}.uid-{i}",
                        reason="UnknownTask",
                        namespace=f"ns-{batch}",
                        task_uid=f"uid-{i}",
                        excerpt="{}",
                    )
                    for i in range(500)
                ]
                + [
                    Rejected(
                        received_at=now,
                        subject=f"opspawn.events.{NAMESPACE}.{UID}",
                        reason="VerificationFailed",
                        namespace=NAMESPACE,
                        task_uid=UID,
                    )
                ],
            )
        rows = store.security_events(limit=None)

    assert sorted((row.reason, row.count) for row in rows) == [
        ("UnknownTask", 10_000),
        ("VerificationFailed", 20),
    ]


def test_opspawn_audit_prune_removes_what_is_older_than_asked(database_url: str) -> None:
    with AuditStore(database_url) as store:
        store.migrate()
        store.record_batch(
            attempt_events(steps=2),
            [
                Rejected(received_at=LONG_AGO, subject="s", reason="VerificationFailed"),
                Rejected(received_at=datetime.now(UTC), subject="s", reason="NoSigningKey"),
            ],
            [DeadLetter(received_at=LONG_AGO, subject="x", stream_sequence=1, reason="not JSON")],
        )
        store.record_task(
            TaskSnapshot(
                task_uid=UID,
                attempt=1,
                namespace=NAMESPACE,
                name=NAME,
                phase="Succeeded",
                finished_at=LONG_AGO,
            )
        )

    pruned = _opspawn(database_url, "audit", "prune", "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("pruned 1 security events, 1 dead letters older than")
    with AuditStore(database_url) as store:
        assert [row.reason for row in store.security_events()] == ["NoSigningKey"]
        assert store.count_events(UID) > 0  # attempts only with --attempts

    pruned = _opspawn(database_url, "audit", "prune", "--older-than", "30d", "--attempts")
    assert pruned.returncode == 0, pruned.stderr
    assert "1 attempts with" in pruned.stdout
    with AuditStore(database_url) as store:
        assert store.attempts(UID) == []
        assert store.count_events(UID) == 0

    refused = _opspawn(database_url, "audit", "prune", "--older-than", "soon")
    assert refused.returncode == 2
    assert "neither an ISO time" in refused.stderr
