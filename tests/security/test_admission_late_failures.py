"""Late failures (independent list, row 14): specs the CRD cannot judge at apply, because CEL
cannot parse JSON, end as `Accepted=False` (InvalidSpec) with
the reason, before any runner Job exists; a well-formed task of the same namespace is served.
What CEL can judge (names, resources, tolerations, selectors, text size) is refused at apply:
tests/integration/test_agenttask_crd.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask

pytestmark = pytest.mark.timeout(120)

DEEP_SCHEMA = '{"type":"object","properties":{"a":' * 40 + '{"type":"string"}' + "}}" * 40
HOSTILE_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("deep-output-schema", {"outputSchema": DEEP_SCHEMA}, "nested deeper than 32 levels"),
    (
        "invalid-output-schema",
        {"outputSchema": json.dumps({"type": "object", "required": "everything"})},
        "outputSchema is not a valid JSON Schema",
    ),
]


@pytest.mark.parametrize(
    ("name", "spec", "reason"), HOSTILE_SPECS, ids=[case[0] for case in HOSTILE_SPECS]
)
def test_a_spec_only_the_operator_can_judge_ends_as_accepted_false_with_the_reason(
    start_test_operator: StartOperator,
    tasks: Tasks,
    name: str,
    spec: dict[str, Any],
    reason: str,
) -> None:
    start_test_operator()
    tasks.create(agenttask(name, **spec))
    tasks.create(agenttask("bystander"))

    accepted = wait_for(
        lambda: tasks.condition(name, "Accepted"), 60, f"{name} to get an Accepted condition"
    )

    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec"), accepted
    assert reason in accepted["message"], accepted["message"]
    assert tasks.status(name)["phase"] == "Failed"
    assert tasks.jobs(name) == [], "a runner Job was made for a spec that cannot run"
    finished = wait_for(lambda: tasks.finished("bystander"), 60, "the bystander to finish")
    assert finished["status"] == "True", finished
