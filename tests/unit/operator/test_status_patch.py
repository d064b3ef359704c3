"""The status write: a JSON merge patch of the top-level fields that differ."""

from __future__ import annotations

from typing import Any

from opspawn.api.agenttask import AgentTaskStatus, Phase, ResultSummary, Usage
from opspawn.operator.reconciler import status_patch
from tests.unit.operator.builders import served


def status(**fields: Any) -> AgentTaskStatus:
    return AgentTaskStatus(**fields)


def test_a_status_as_served_needs_no_patch() -> None:
    desired = status(phase=Phase.RUNNING, attempt=1, job_name="summarise-abc123-1")

    assert status_patch(served(desired), desired) == {}


def test_only_changed_top_level_fields_are_patched() -> None:
    before = status(phase=Phase.PENDING, attempt=1, job_name="summarise-abc123-1")
    after = status(phase=Phase.RUNNING, attempt=1, job_name="summarise-abc123-1")

    assert status_patch(served(before), after) == {"phase": "Running"}


def test_a_new_status_writes_every_field_with_a_value() -> None:
    patch = status_patch({}, status(phase=Phase.QUEUED, queue_position=2))

    assert patch["phase"] == "Queued"
    assert patch["queuePosition"] == 2
    assert patch["attempt"] == 0
    assert patch["retries"] == 0
    assert patch["conditions"] == []
    assert patch["usage"] == served(status())["usage"]
    assert None not in patch.values()
    assert "jobName" not in patch


def test_a_field_that_became_unset_is_removed_with_null() -> None:
    before = status(phase=Phase.QUEUED, queue_position=2)
    after = status(phase=Phase.PENDING)

    assert status_patch(served(before), after) == {"phase": "Pending", "queuePosition": None}


def test_a_field_the_model_does_not_know_is_removed() -> None:
    desired = status(phase=Phase.RUNNING)

    patch = status_patch({**served(desired), "legacyField": "x"}, desired)

    assert patch == {"legacyField": None}


def test_a_nested_change_rewrites_the_whole_field_without_nulls() -> None:
    before = status(usage=Usage(input_tokens=10, total_tokens=10, cost_usd=0.5))
    after = status(usage=Usage(input_tokens=20, total_tokens=20))

    patch = status_patch(served(before), after)

    # costUSD is left out rather than nulled: a merge patch would delete it anyway, and the
    # field as served then matches what the next reconcile computes.
    assert patch == {
        "usage": {
            "inputTokens": 20,
            "outputTokens": 0,
            "cachedTokens": 0,
            "reasoningTokens": 0,
            "totalTokens": 20,
        }
    }


def test_fields_are_written_by_their_wire_names() -> None:
    desired = status(result=ResultSummary(preview="done", size_bytes=4, sha256="ab" * 32))

    patch = status_patch(served(status()), desired)

    assert patch == {
        "result": {"preview": "done", "truncated": False, "sizeBytes": 4, "sha256": "ab" * 32}
    }
