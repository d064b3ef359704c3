"""The one retry layer of every model call.

SDK retries are switched off in every adapter; this module alone decides. It retries the
errors marked `retryable` (HTTP 408/409/429/5xx, connection errors, timeouts), waits what the
provider asked for in Retry-After when it did (exponential backoff with jitter otherwise),
bounds each attempt by the per-call timeout, and never waits or runs past the whole-run
deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import DeadlineExceededError, ModelError, ModelTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How model calls are retried."""

    max_attempts: int = 5
    """Attempts in all, the first one included."""
    call_timeout: float = 120.0
    """Seconds one attempt may take, from sending the request to the last byte of the reply."""
    initial_backoff: float = 1.0
    """First backoff delay when the provider gave no Retry-After (doubles each attempt)."""
    max_backoff: float = 30.0
    """Longest backoff delay (Retry-After is honoured even when longer)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.call_timeout <= 0:
            raise ValueError("call_timeout must be positive")


@dataclass(frozen=True)
class Retried(Generic[T]):
    """A result and the number of attempts it took."""

    value: T
    attempts: int


class _Stop:
    """Stops after the last attempt, or when the next wait would reach the deadline."""

    def __init__(self, policy: RetryPolicy, deadline: Deadline) -> None:
        self._policy = policy
        self._deadline = deadline
        self.deadline_reached = False

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self._policy.max_attempts:
            return True
        if state.upcoming_sleep >= self._deadline.remaining():
            self.deadline_reached = True
            return True
        return False


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, ModelError) and error.retryable


def _log_retry(provider: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "model call to %s failed (attempt %d: %s); retrying in %.2fs",
            provider,
            state.attempt_number,
            error,
            state.upcoming_sleep,
        )

    return before_sleep


async def call_with_retries(
    attempt: Callable[[float], Awaitable[T]],
    *,
    provider: str,
    policy: RetryPolicy,
    deadline: Deadline,
) -> Retried[T]:
    """Run `attempt(time_limit)` until it succeeds, retrying retryable `ModelError`s.

    `attempt` receives the seconds it may take (the per-call timeout, or less when the deadline
    is nearer) and must raise `ModelError`s only; it is also cancelled when it overruns.
    Raises the last error when attempts run out, and `DeadlineExceededError` when the deadline
    leaves no time for the next attempt or wait.
    """
    stop = _Stop(policy, deadline)
    backoff = wait_exponential_jitter(
        initial=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
    )

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ModelError) and error.retry_after is not None:
            return error.retry_after
        return float(backoff(state))

    attempts = 0

    async def bounded_attempt() -> T:
        nonlocal attempts
        attempts += 1
        return await _bounded(attempt, provider=provider, policy=policy, deadline=deadline)

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(_is_retryable),
        before_sleep=_log_retry(provider),
        reraise=True,
    )
    try:
        value: T = await retrying(bounded_attempt)
    except ModelError as error:
        error.attempts = attempts
        if stop.deadline_reached:
            raise DeadlineExceededError(
                f"the run deadline leaves no time to retry the call to {provider} "
                f"({deadline.remaining():.1f}s left) after: {error}",
                provider=provider,
                last_error=error,
            ) from None
        raise
    return Retried(value=value, attempts=attempts)


async def _bounded(
    attempt: Callable[[float], Awaitable[T]],
    *,
    provider: str,
    policy: RetryPolicy,
    deadline: Deadline,
) -> T:
    """One attempt, cut at the per-call timeout or at the deadline, whichever is first."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise DeadlineExceededError(
            f"the run deadline has passed; {provider} was not called",
            provider=provider,
            last_error=None,
        )
    timeout = min(policy.call_timeout, remaining)
    try:
        async with asyncio.timeout(timeout):
            return await attempt(timeout)
    except TimeoutError:
        if timeout < policy.call_timeout:
            raise DeadlineExceededError(
                f"the run deadline passed while waiting for {provider}",
                provider=provider,
                last_error=None,
            ) from None
        raise ModelTimeoutError(
            f"{provider} did not answer within {timeout:g}s", provider=provider
        ) from None
