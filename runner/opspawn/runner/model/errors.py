"""Provider-neutral errors raised by model clients.

Adapters translate every SDK and transport failure into one of these, so the agent loop and
the retry layer never see SDK exception types. Messages never contain the API key: adapters
pass provider-supplied text through `redact` and raise without chaining the SDK exception
(whose text and request objects may carry credentials).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from opspawn.runner.model.retry_after import parse_retry_after

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""HTTP statuses worth retrying besides every 5xx."""

MAX_PROVIDER_MESSAGE_CHARS = 500


class ModelError(Exception):
    """A model call failed.

    `retryable` tells the retry layer whether another attempt may succeed; `retry_after` is
    the delay the provider asked for (seconds), when it sent one; `attempts` is how many
    attempts the retry layer made before giving up.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (after {self.attempts} attempts)" if self.attempts > 1 else text


class ModelRequestError(ModelError):
    """The provider refused the request (4xx other than 408/409/429); retrying will not help."""


class ModelAuthError(ModelRequestError):
    """The provider refused the API key (401/403)."""


class ModelRateLimitError(ModelError):
    """HTTP 429: rate limited or out of quota."""

    retryable = True


class ModelServerError(ModelError):
    """HTTP 5xx, 408 or 409: a transient provider-side failure."""

    retryable = True


class ModelConnectionError(ModelError):
    """The provider could not be reached, or the connection broke."""

    retryable = True


class ModelTimeoutError(ModelConnectionError):
    """A model call took longer than the per-call timeout."""


class ModelResponseError(ModelError):
    """The provider answered, but with nothing usable (no choices, blocked prompt …)."""


class DeadlineExceededError(ModelError):
    """The whole-run deadline left no time for the (next) attempt.

    `last_error` is the failure that would otherwise have been retried, if any.
    """

    def __init__(self, message: str, *, provider: str, last_error: ModelError | None) -> None:
        super().__init__(message, provider=provider)
        self.last_error = last_error


def error_for_status(
    status: int, message: str, *, provider: str, retry_after: float | None
) -> ModelError:
    """The neutral error for an HTTP error status."""
    text = f"{provider} returned HTTP {status}: {message}"
    if status in (401, 403):
        return ModelAuthError(text, provider=provider, status=status)
    if status == 429:
        return ModelRateLimitError(text, provider=provider, status=status, retry_after=retry_after)
    if status >= 500 or status in RETRYABLE_STATUSES:
        return ModelServerError(text, provider=provider, status=status, retry_after=retry_after)
    return ModelRequestError(text, provider=provider, status=status)


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


class SDKStatusError(Protocol):
    """What the OpenAI and Anthropic SDKs' `APIStatusError` carry."""

    @property
    def status_code(self) -> int: ...
    @property
    def body(self) -> object: ...
    @property
    def message(self) -> str: ...
    @property
    def response(self) -> _HasHeaders: ...


@dataclass(frozen=True)
class SDKErrorTypes:
    """The exception classes of the OpenAI or Anthropic SDK, which share one design."""

    timeout: type[Exception]
    """`APITimeoutError`: checked first, since it is a connection error too."""
    connection: type[Exception]
    """`APIConnectionError`."""
    status: type[SDKStatusError]
    """`APIStatusError`."""


def translate_sdk_error(
    error: Exception, sdk: SDKErrorTypes, *, provider: str, api_key: str
) -> ModelError:
    """The neutral error for an exception of the OpenAI or Anthropic SDK; one that is not a
    timeout, connection or status error is an answer the SDK could not use."""
    if isinstance(error, sdk.timeout):
        return ModelTimeoutError(f"{provider} did not answer in time", provider=provider)
    if isinstance(error, sdk.connection):
        return ModelConnectionError(
            f"could not reach {provider}: {redact(str(error), api_key)}", provider=provider
        )
    if isinstance(error, sdk.status):
        message = provider_message(error.body, fallback=error.message)
        return error_for_status(
            error.status_code,
            redact(message, api_key),
            provider=provider,
            retry_after=parse_retry_after(error.response.headers),
        )
    return ModelResponseError(
        f"unusable answer from {provider}: {redact(str(error), api_key)}", provider=provider
    )


def provider_message(body: object, fallback: str) -> str:
    """The human-readable message of a provider's error body (`{"message": ...}` or
    `{"error": {"message": ...}}`), else `fallback`."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return fallback


def redact(text: str, secret: str | None) -> str:
    """`text` without `secret`, cut to a bounded length."""
    if secret:
        text = text.replace(secret, "[redacted]")
    if len(text) > MAX_PROVIDER_MESSAGE_CHARS:
        text = text[:MAX_PROVIDER_MESSAGE_CHARS] + "…"
    return text


@contextmanager
def unusable_answers(provider: str) -> Iterator[None]:
    """Turns an answer the neutral model cannot hold (a tool call without a name …) into a
    `ModelResponseError` instead of a validation error from deep inside."""
    try:
        yield
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(item) for item in first["loc"])
        raise ModelResponseError(
            f"unusable answer from {provider}: {where}: {first['msg']}", provider=provider
        ) from None
