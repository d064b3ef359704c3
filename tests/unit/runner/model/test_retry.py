"""The retry layer with scripted attempt outcomes (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from opspawn.runner.model import (
    Deadline,
    DeadlineExceededError,
    ModelError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
    RetryPolicy,
)
from opspawn.runner.model.retry import call_with_retries

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=4, call_timeout=5, initial_backoff=0.001, max_backoff=0.002)


class Attempts:
    """An attempt function that raises the scripted errors, then returns "ok"."""

    def __init__(self, *errors: ModelError) -> None:
        self._errors: Iterator[ModelError] = iter(errors)
        self.time_limits: list[float] = []

    async def __call__(self, time_limit: float) -> str:
        self.time_limits.append(time_limit)
        error = next(self._errors, None)
        if error is not None:
            raise error
        return "ok"


def server_error(retry_after: float | None = None) -> ModelServerError:
    return ModelServerError("HTTP 503", provider="p", status=503, retry_after=retry_after)


async def test_retryable_errors_are_retried_until_success() -> None:
    attempt = Attempts(server_error(), ModelRateLimitError("429", provider="p", status=429))
    result = await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.never())
    assert (result.value, result.attempts) == ("ok", 3)


async def test_other_errors_are_raised_at_once() -> None:
    attempt = Attempts(ModelRequestError("HTTP 400", provider="p", status=400))
    with pytest.raises(ModelRequestError):
        await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.never())
    assert len(attempt.time_limits) == 1


async def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    attempt = Attempts(*(server_error() for _ in range(4)))
    with pytest.raises(ModelServerError) as raised:
        await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.never())
    assert raised.value.attempts == 4
    assert str(raised.value) == "HTTP 503 (after 4 attempts)"


async def test_a_retry_after_beyond_the_deadline_stops_retrying() -> None:
    attempt = Attempts(server_error(retry_after=10))
    with pytest.raises(DeadlineExceededError) as raised:
        await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.after(5))
    assert isinstance(raised.value.last_error, ModelServerError)
    assert len(attempt.time_limits) == 1


async def test_each_attempt_gets_the_call_timeout_or_what_is_left_of_the_deadline() -> None:
    attempt = Attempts()
    await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.never())
    await call_with_retries(attempt, provider="p", policy=FAST, deadline=Deadline.after(1))
    assert attempt.time_limits[0] == 5
    assert 0 < attempt.time_limits[1] <= 1


async def test_an_overrunning_attempt_is_cut_at_the_call_timeout() -> None:
    async def hang(time_limit: float) -> str:
        await asyncio.Event().wait()
        return "never"

    policy = RetryPolicy(max_attempts=2, call_timeout=0.05, initial_backoff=0.001)
    with pytest.raises(ModelTimeoutError) as raised:
        await call_with_retries(hang, provider="p", policy=policy, deadline=Deadline.never())
    assert raised.value.attempts == 2


def test_policies_are_checked() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="call_timeout"):
        RetryPolicy(call_timeout=0)
