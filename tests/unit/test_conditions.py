from __future__ import annotations

from opspawn.api.agenttask import ConditionStatus
from opspawn.api.conditions import RUNNING, SUCCEEDED, find, is_finished, set_condition

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def test_transition_time_changes_only_with_status() -> None:
    conditions = set_condition([], RUNNING, ConditionStatus.TRUE, "Started", "", now=T0)
    conditions = set_condition(
        conditions, RUNNING, ConditionStatus.TRUE, "StepTaken", "step 2", now=T1
    )
    running = find(conditions, RUNNING)
    assert running is not None
    assert (running.reason, running.last_transition_time) == ("StepTaken", T0)
    conditions = set_condition(conditions, RUNNING, ConditionStatus.FALSE, "Finished", "", now=T2)
    running = find(conditions, RUNNING)
    assert running is not None and running.last_transition_time == T2


def test_succeeded_is_final_once_decided() -> None:
    conditions = set_condition([], SUCCEEDED, ConditionStatus.UNKNOWN, "Running", "", now=T0)
    assert not is_finished(conditions)
    conditions = set_condition(conditions, SUCCEEDED, ConditionStatus.FALSE, "TimedOut", "", now=T1)
    assert is_finished(conditions)
    after = set_condition(conditions, SUCCEEDED, ConditionStatus.TRUE, "Completed", "", now=T2)
    succeeded = find(after, SUCCEEDED)
    assert succeeded is not None
    assert (succeeded.status, succeeded.reason, succeeded.last_transition_time) == (
        ConditionStatus.FALSE,
        "TimedOut",
        T1,
    )
