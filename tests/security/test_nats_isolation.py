"""Attacks on the NATS bus by a runner (tenant code) holding its task's credentials, as the
operator mints them into the per-task Secret, on a real nats-server with auth and JetStream.

Each test is the attack: the attacker connects with task A's credentials and tries to read,
forge, or take over; the server refuses, and the victim (task B, the operator's consumer) is
still served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials
from nats.js.api import AckPolicy, ConsumerConfig

from opspawn.api.events import MAX_EVENT_BYTES, STREAM_NAME, event_subject, runner_inbox
from opspawn.dev.nats import NatsServer
from opspawn.operator.nats_auth import jwt_claims
from opspawn.operator.runner_job import (
    NATS_CREDENTIALS_KEY,
    RunnerSettings,
    build_runner_job,
    build_task_secret,
)
from opspawn.operator.stream import StreamSettings, stream_config

pytestmark = pytest.mark.anyio
DURABLE = "opspawn-operator"
TIMEOUT_SECONDS = 300


def task(namespace: str, uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "t", "namespace": namespace, "uid": uid},
        "spec": {
            "goal": "g",
            "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m/v1"},
            "limits": {"timeoutSeconds": TIMEOUT_SECONDS},
        },
    }


def minted(server: NatsServer, namespace: str, uid: str) -> str:
    """The credentials the operator puts into the task's Secret."""
    settings = RunnerSettings(image="i", nats_url=server.url, nats_issuer=server.issuer)
    secret = build_task_secret(task(namespace, uid), "k" * 32, settings)
    return str(secret["stringData"][NATS_CREDENTIALS_KEY])


async def runner(
    server: NatsServer, namespace: str, uid: str, closed: asyncio.Event | None = None
) -> NatsClient:
    errors: list[Exception] = []

    async def error_cb(error: Exception) -> None:
        errors.append(error)

    async def closed_cb() -> None:
        if closed is not None:
            closed.set()

    connection = await nats.connect(
        server.url,
        user_credentials=RawCredentials(minted(server, namespace, uid)),
        inbox_prefix=runner_inbox(uid).encode(),
        error_cb=error_cb,
        closed_cb=closed_cb,
        max_reconnect_attempts=0,
    )
    connection.violations = errors  # type: ignore[attr-defined]
    return connection


@pytest.fixture
async def admin(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """The stream and the operator's durable consumer, as the operator sets them up."""
    connection = await nats.connect(**nats_server.connect_options())
    jetstream = connection.jetstream()
    await jetstream.add_stream(stream_config(StreamSettings()))
    await jetstream.add_consumer(
        STREAM_NAME, ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT)
    )
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_runner_cannot_read_other_tenants_events(
    nats_server: NatsServer, admin: NatsClient
) -> None:
    attacker = await runner(nats_server, "team-a", "uid-a")
    victim = await runner(nats_server, "team-b", "uid-b")
    try:
        heard: list[bytes] = []

        async def listen(message: Any) -> None:
            heard.append(message.data)

        for subject in ("opspawn.events.>", ">", event_subject("team-b", "uid-b"), "_INBOX.>"):
            await attacker.subscribe(subject, cb=listen)
        await attacker.flush()
        # A pull consumer of its own, or a peek at the operator's: both need $JS.API.
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await attacker.jetstream().pull_subscribe(
                "opspawn.events.>", stream=STREAM_NAME, durable="thief"
            )
        await victim.jetstream().publish(
            event_subject("team-b", "uid-b"), b"secret of b", stream=STREAM_NAME
        )
        await asyncio.sleep(0)  # nothing may arrive; the checks below are on the server
        await attacker.flush()
        assert heard == []
        refused = " ".join(str(e) for e in attacker.violations)  # type: ignore[attr-defined]
        for subject in ("opspawn.events.>", ">", "opspawn.events.team-b.uid-b", "_inbox.>"):
            assert f'violation for subscription to "{subject}"' in refused
        info = await admin.jetstream().stream_info(STREAM_NAME)
        assert info.state.messages == 1
        consumers = {c.name for c in await admin.jetstream().consumers_info(STREAM_NAME)}
        assert consumers == {DURABLE}
    finally:
        await attacker.close()
        await victim.close()


async def test_a_runner_cannot_publish_as_another_task_or_delete_the_operators_consumer(
    nats_server: NatsServer, admin: NatsClient
) -> None:
    attacker = await runner(nats_server, "team-a", "uid-a")
    try:
        js = attacker.jetstream(timeout=1)
        for subject in (event_subject("team-b", "uid-b"), "opspawn.events.team-a.uid-other"):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b"forged", stream=STREAM_NAME)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer(STREAM_NAME, DURABLE)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_stream(STREAM_NAME)
        # Its own subject works: that is all it may do.
        ack = await js.publish(event_subject("team-a", "uid-a"), b"mine", stream=STREAM_NAME)
        assert ack.seq == 1

        info = await admin.jetstream().consumer_info(STREAM_NAME, DURABLE)
        assert info.name == DURABLE and info.num_pending == 1
    finally:
        await attacker.close()


async def test_a_runner_credential_expires_after_the_tasks_last_deadline(
    nats_server: NatsServer, admin: NatsClient
) -> None:
    credentials = minted(nats_server, "team-a", "uid-a")
    token = credentials.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    claims = jwt_claims(token)
    # One attempt plus two retries (the default), each timeout + 30 s grace, and backoffs.
    assert claims["exp"] >= time.time() + 3 * (TIMEOUT_SECONDS + 30)
    assert claims["exp"] <= time.time() + 2 * 86_400
    assert claims["nats"]["pub"] == {"allow": [event_subject("team-a", "uid-a")]}

    expired = nats_server.issuer.runner_credentials("team-a", "uid-a", time.time() - 1)
    with pytest.raises(Exception, match=r"(?i)authorization|expired"):
        await nats.connect(
            nats_server.url,
            user_credentials=RawCredentials(expired),
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )


async def test_connecting_without_credentials_is_refused(nats_server: NatsServer) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(nats_server.url, max_reconnect_attempts=0, allow_reconnect=False)


def test_the_runner_credential_reaches_the_pod_only_by_secret_reference(
    nats_server: NatsServer,
) -> None:
    settings = RunnerSettings(image="i", nats_url=nats_server.url, nats_issuer=nats_server.issuer)
    body = task("team-a", "uid-a")
    secret = build_task_secret(body, "k" * 32, settings)
    job = build_runner_job(body, 1, settings)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (variable,) = [e for e in container["env"] if e["name"] == "OPSPAWN_NATS_CREDENTIALS"]
    assert variable["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": NATS_CREDENTIALS_KEY,
    }
    literal = json.dumps([e.get("value") for e in container["env"]])
    credentials = secret["stringData"][NATS_CREDENTIALS_KEY]
    user_seed = credentials.split("-----BEGIN USER NKEY SEED-----\n")[1].split("\n")[0]
    token = credentials.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    # Booleans only: a failing assertion must not print a credential.
    seed_in_env, jwt_in_env = user_seed in literal, token in literal
    assert user_seed.startswith("SU"), "not a user seed"
    assert not seed_in_env, "the runner's NATS seed is in an env value"
    assert not jwt_in_env, "the runner's NATS JWT is in an env value"
    assert jwt_claims(token)["nats"]["issuer_account"] == nats_server.issuer.account


async def test_a_runner_cannot_flood_the_stream_with_oversized_messages(
    nats_server: NatsServer, admin: NatsClient
) -> None:
    closed = asyncio.Event()
    attacker = await runner(nats_server, "team-a", "uid-a", closed)
    oversized = b"x" * (MAX_EVENT_BYTES + 100_000)  # under the server-wide limit of 1 MiB
    await attacker.publish(event_subject("team-a", "uid-a"), oversized)
    with contextlib.suppress(Exception):  # the server cuts the connection
        await attacker.flush(timeout=2)
    async with asyncio.timeout(10):
        await closed.wait()

    info = await admin.jetstream().stream_info(STREAM_NAME)
    assert info.state.messages == 0
