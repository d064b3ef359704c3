"""current_time answers in UTC or the time zone asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opspawn.runner.tools import ToolError
from opspawn.runner.tools.current_time import CurrentTime

pytestmark = pytest.mark.anyio

NOON = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)


async def test_utc_by_default() -> None:
    result = await CurrentTime(clock=lambda: NOON).call({})
    assert result.content == "2026-07-01T12:00:00Z"


async def test_in_a_time_zone() -> None:
    result = await CurrentTime(clock=lambda: NOON).call({"timezone": "Europe/Paris"})
    assert result.content == "2026-07-01T14:00:00+02:00"


async def test_unknown_time_zone() -> None:
    with pytest.raises(ToolError, match="unknown time zone"):
        await CurrentTime(clock=lambda: NOON).call({"timezone": "Mars/Olympus_Mons"})
