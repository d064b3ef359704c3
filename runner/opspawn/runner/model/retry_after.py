"""Reading the delay a provider asks for before the next attempt."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to the response headers, or None when they do not say.

    Reads `retry-after-ms` (milliseconds, sent by OpenAI and Anthropic) first, then
    `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3). A date in the past
    means no wait (0.0); malformed values are ignored.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = _non_negative_number(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_number(value)
    if seconds is not None:
        return seconds
    return _seconds_until_http_date(value, now or datetime.now(UTC))


def _non_negative_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _seconds_until_http_date(value: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
