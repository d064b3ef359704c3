from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opspawn.runner.model.retry_after import parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Thu, 01 Jan 2026 11:59:00 GMT"}, 0.0),
    ],
)
def test_retry_after_is_read_as_seconds(headers: dict[str, str], seconds: float) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "soon"},
        {"Retry-After": "-5"},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"Retry-After": ""},
    ],
)
def test_missing_or_malformed_retry_after_is_ignored(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_malformed_milliseconds_fall_back_to_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}, now=NOW) == 2.0
