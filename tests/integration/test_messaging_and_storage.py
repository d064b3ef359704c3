"""NATS JetStream and Postgres of the local stack, exercised the way Opspawn uses them."""

from __future__ import annotations

import asyncio

import nats
import psycopg
from nats.js.api import ConsumerConfig, StreamConfig

from opspawn.dev.stack import DevStack


def test_jetstream_publish_and_durable_pull_consumer_round_trip(stack: DevStack) -> None:
    assert stack.nats is not None

    async def round_trip() -> list[tuple[str, bytes]]:
        connection = await nats.connect(stack.nats.url)  # type: ignore[union-attr]
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
