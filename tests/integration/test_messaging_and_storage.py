"""NATS JetStream and Postgres of the local stack, exercised the way Opspawn uses them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import nats
import psycopg
from nats.js.api import ConsumerConfig, StreamConfig

from opspawn.dev.postgres import Postgres, postgres_bindir
from opspawn.dev.stack import DevStack


def test_jetstream_publish_and_durable_pull_consumer_round_trip(stack: DevStack) -> None:
    assert stack.nats is not None

    async def round_trip() -> list[tuple[str, bytes]]:
        connection = await nats.connect(**stack.nats.connect_options())  # type: ignore[union-attr]
        try:
            stream = connection.jetstream()
            await stream.add_stream(
                StreamConfig(name="ROUNDTRIP", subjects=["roundtrip.>"], duplicate_window=60)
            )
            for number in range(3):
                await stream.publish(
                    f"roundtrip.task.{number}",
                    f"event {number}".encode(),
                    headers={"Nats-Msg-Id": f"id-{number}"},
                )
            duplicate = await stream.publish(
                "roundtrip.task.0", b"event 0", headers={"Nats-Msg-Id": "id-0"}
            )
            assert duplicate.duplicate is True
            subscription = await stream.pull_subscribe(
                "roundtrip.>", durable="auditor", config=ConsumerConfig(ack_wait=30)
            )
            received = []
            for message in await subscription.fetch(10, timeout=5):
                received.append((message.subject, message.data))
                await message.ack_sync()
            info = await stream.consumer_info("ROUNDTRIP", "auditor")
            assert info.num_ack_pending == 0 and info.num_pending == 0
            return received
        finally:
            await connection.close()

    received = asyncio.run(round_trip())
    assert received == [(f"roundtrip.task.{n}", f"event {n}".encode()) for n in range(3)]


def test_postgres_round_trip(stack: DevStack) -> None:
    assert stack.postgres is not None
    with psycopg.connect(stack.postgres.dsn, autocommit=True) as connection:
        connection.execute(
            "create table if not exists roundtrip (id text primary key, payload jsonb)"
        )
        connection.execute(
            "insert into roundtrip values (%s, %s::jsonb) on conflict do nothing",
            ("event-1", '{"step": 1}'),
        )
        connection.execute(
            "insert into roundtrip values (%s, %s::jsonb) on conflict do nothing",
            ("event-1", '{"step": 1}'),
        )
        rows = connection.execute("select id, payload from roundtrip").fetchall()
    assert rows == [("event-1", {"step": 1})]


def _cluster_state(postgres: Postgres) -> str:
    assert postgres.data_root is not None
    control = subprocess.run(
        [str(postgres_bindir() / "pg_controldata"), "-D", str(postgres.data_root / "data")],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C"},
    ).stdout
    return next(
        line.split(":", 1)[1].strip()
        for line in control.splitlines()
        if line.startswith("Database cluster state")
    )


def test_paused_postgres_shuts_down_cleanly_and_keeps_every_commit(tmp_path: Path) -> None:
    """The outage tests pause Postgres mid-run and check that nothing acknowledged is lost:
    pausing must be a clean shutdown that keeps every committed transaction, as in production."""
    postgres = Postgres(tmp_path / "postgres")
    postgres.start()
    try:
        with psycopg.connect(postgres.dsn, autocommit=True) as connection:
            connection.execute("create table committed (n int primary key)")
            for n in range(200):  # one transaction each, the last one just before the pause
                connection.execute("insert into committed values (%s)", (n,))
            postgres.pause()
        assert _cluster_state(postgres) == "shut down"

        postgres.start()
        with psycopg.connect(postgres.dsn) as connection:
            count = connection.execute("select count(*) from committed").fetchone()
        assert count == (200,)
    finally:
        postgres.stop()
