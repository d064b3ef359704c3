"""The retry layer over each provider's real SDK: Retry-After, 5xx, timeouts, the deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from opspawn.fakes import FakeModelServer
from opspawn.runner.model import (
    Deadline,
    DeadlineExceededError,
    Message,
    ModelAuthError,
    ModelClient,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeoutError,
    RetryPolicy,
)

pytestmark = pytest.mark.anyio

Serve = Callable[[dict[str, Any]], Awaitable[FakeModelServer]]
Connect = Callable[..., ModelClient]
PROVIDERS = ("openai", "anthropic", "google")
HELLO = [Message.user("hello")]


async def ask(client: ModelClient, deadline: Deadline | None = None) -> str:
    response = await client.complete(
        HELLO, [], output_schema=None, deadline=deadline or Deadline.after(30)
    )
    return response.message.text


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_is_retried_after_the_retry_after_delay(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"text": "ok", "fail": [{"status": 429, "retry_after": 1}]}]})
    client = connect(server, provider)

    response = await client.complete(HELLO, [], output_schema=None, deadline=Deadline.after(30))

    assert response.message.text == "ok"
    assert response.attempts == 2
    refused, served = server.requests
    assert (refused.status, served.status) == (429, 200)
    assert refused.responded_at is not None
    assert served.received_at - refused.responded_at >= 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retry_after_as_http_date_is_honoured(
    provider: str, serve: Serve, connect: Connect
) -> None:
    # A date in the past means "retry now": the retry happens without the provider's delay.
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    server = await serve(
        {"turns": [{"text": "ok", "fail": [{"status": 503, "retry_after": past}]}]}
    )
    client = connect(server, provider)

    assert await ask(client) == "ok"
    assert [r.status for r in server.requests] == [503, 200]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_500_is_retried_then_succeeds(provider: str, serve: Serve, connect: Connect) -> None:
    server = await serve({"turns": [{"text": "ok", "fail": [{"status": 500}, {"status": 502}]}]})
    client = connect(server, provider)

    response = await client.complete(HELLO, [], output_schema=None, deadline=Deadline.after(30))

    assert response.message.text == "ok"
    assert response.attempts == 3
    assert [r.status for r in server.requests] == [500, 502, 200]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_400_is_not_retried(provider: str, serve: Serve, connect: Connect) -> None:
    server = await serve({"turns": [{"text": "ok", "fail": [{"status": 400, "message": "bad"}]}]})
    client = connect(server, provider)

    with pytest.raises(ModelRequestError, match="HTTP 400: bad"):
        await ask(client)
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_slow_replies_time_out_after_bounded_retries(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"text": "too late", "delay": 30}]})
    policy = RetryPolicy(max_attempts=2, call_timeout=0.3, initial_backoff=0.01)
    client = connect(server, provider, retry=policy)

    with pytest.raises(ModelTimeoutError) as raised:
        await ask(client)

    assert raised.value.attempts == 2
    assert f"{provider} did not answer" in str(raised.value)
    assert "after 2 attempts" in str(raised.value)
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_deadline_stops_retrying_instead_of_waiting_past_it(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"text": "ok", "fail": [{"status": 429, "retry_after": 60}]}]})
    client = connect(server, provider)
    deadline = Deadline.after(20)

    with pytest.raises(DeadlineExceededError) as raised:
        await ask(client, deadline)

    assert len(server.requests) == 1
    assert raised.value.last_error is not None
    assert raised.value.last_error.status == 429
    assert not deadline.expired  # it gave up at once rather than sleeping into the deadline


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_deadline_cuts_a_slow_call(provider: str, serve: Serve, connect: Connect) -> None:
    server = await serve({"turns": [{"text": "too late", "delay": 30}]})
    client = connect(server, provider)

    with pytest.raises(DeadlineExceededError):
        await ask(client, Deadline.after(0.3))
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_expired_deadline_makes_no_call(
    provider: str, serve: Serve, connect: Connect
) -> None:
    server = await serve({"turns": [{"text": "ok"}]})
    client = connect(server, provider)

    with pytest.raises(DeadlineExceededError):
        await ask(client, Deadline.after(0))
    assert server.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_api_key_never_appears_in_errors(
    provider: str, serve: Serve, connect: Connect, fake_key: str
) -> None:
    echo = f"Incorrect API key provided: {fake_key}"
    server = await serve({"turns": [{"text": "ok", "fail": [{"status": 401, "message": echo}]}]})
    client = connect(server, provider)

    with pytest.raises(ModelAuthError) as raised:
        await ask(client)

    assert "HTTP 401" in str(raised.value)
    assert fake_key not in str(raised.value)
    assert fake_key not in repr(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unreachable_provider_is_a_connection_error(
    provider: str, serve: Serve, connect: Connect, fake_key: str
) -> None:
    server = await serve({"turns": [{"text": "ok"}]})
    policy = RetryPolicy(max_attempts=2, call_timeout=5, initial_backoff=0.01)
    client = connect(server, provider, retry=policy)
    await server.stop()

    with pytest.raises(ModelConnectionError) as raised:
        await ask(client)

    assert raised.value.attempts == 2
    assert fake_key not in str(raised.value)
