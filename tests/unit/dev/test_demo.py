"""`make demo`'s pure parts: which model it picks, and the progress lines it prints."""

from __future__ import annotations

from typing import Any

import pytest

from opspawn.dev.demo_model import choose_model
from opspawn.dev.demo_progress import SETTLE_SECONDS, Progress, follow

KEY = "sk-not-a-real-key-0123456789"


def test_without_a_key_the_example_runs_on_the_mock_model_as_written() -> None:
    model = choose_model({"OPENAI_API_KEY": "  "})
    example = {"provider": "openai", "name": "gpt-4.1-mini", "temperature": 0.2}
    assert not model.real
    assert model.spec_model(example) == {
        **example,
        "apiKeySecretRef": {"name": "openai", "key": "api-key"},
    }
    assert "the mock model" in model.describe()


@pytest.mark.parametrize(
    ("variable", "provider", "name"),
    [
        ("ANTHROPIC_API_KEY", "anthropic", "claude-haiku-4-5"),
        ("GOOGLE_API_KEY", "google", "gemini-2.5-flash"),
    ],
)
def test_an_exported_key_picks_its_provider_and_stays_out_of_the_description(
    variable: str, provider: str, name: str
) -> None:
    model = choose_model({variable: KEY + "\n"})
    spec = model.spec_model({"provider": "openai", "name": "gpt-4.1-mini", "temperature": 0.2})
    assert spec == {
        "provider": provider,
        "name": name,
        "temperature": 0.2,
        "apiKeySecretRef": {"name": provider, "key": "api-key"},
    }
    assert model.key_secret({variable: KEY + "\n"})["stringData"] == {"api-key": KEY}
    assert KEY not in model.describe()


def test_openai_is_preferred_and_its_base_url_variable_is_honoured() -> None:
    model = choose_model(
        {"GEMINI_API_KEY": KEY, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://gw:8000/v1"}
    )
    assert (model.provider.name, model.base_url) == ("openai", "http://gw:8000/v1")
    assert model.describe() == (
        "openai/gpt-4.1-mini at http://gw:8000/v1 (key from $OPENAI_API_KEY)"
    )


def _status(phase: str, steps: int, event: str | None, succeeded: str = "Unknown") -> Any:
    status: dict[str, Any] = {
        "phase": phase,
        "attempt": 1,
        "steps": steps,
        "usage": {"totalTokens": 1234 * steps, "costUSD": 0.00035 * steps} if steps else {},
        "conditions": [
            {"type": "Running", "status": "False", "message": "waiting for Job j-1"},
            {"type": "Succeeded", "status": succeeded, "reason": "Completed"},
        ],
    }
    if event is not None:
        status["lastEvent"] = {"type": event, "summary": f"{event} happened"}
    return status


def test_follow_prints_each_change_once_and_waits_for_the_finished_event() -> None:
    statuses = iter(
        [
            _status("Pending", 0, None),
            _status("Pending", 0, None),
            _status("Running", 1, "llm_call"),
            _status("Succeeded", 2, "usage", succeeded="True"),
            _status("Succeeded", 2, "finished", succeeded="True"),
        ]
    )
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lines: list[str] = []
    final = follow(lambda: next(statuses), 60, lines.append, lambda: now[0], sleep)
    assert final["lastEvent"]["type"] == "finished"
    assert lines == [
        "     0.0s  Pending    step 0         0 tokens            waiting for Job j-1",
        "     0.5s  Running    step 1     1,234 tokens  $0.00035  llm_call happened",
        "     0.8s  Succeeded  step 2     2,468 tokens   $0.0007  usage happened",
        "     1.0s  Succeeded  step 2     2,468 tokens   $0.0007  finished happened",
    ]


def test_follow_gives_up_on_the_finished_event_and_on_a_task_that_never_ends() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    done = _status("Failed", 1, "error", succeeded="False")
    final = follow(lambda: done, 60, lambda _: None, lambda: now[0], sleep)
    assert final is done and SETTLE_SECONDS <= now[0] < SETTLE_SECONDS + 1
    with pytest.raises(TimeoutError, match="did not finish within 60s"):
        follow(lambda: _status("Running", 1, "step"), 60, lambda _: None, lambda: now[0], sleep)
    assert Progress.of({}).phase == "Pending"
