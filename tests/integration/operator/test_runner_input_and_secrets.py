"""What reaches the runner Pod, what never leaves the API-key Secret, and what a task costs
the apiserver in writes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from kubernetes import client

from opspawn.dev.operator_process import OPERATOR_USER
from opspawn.dev.stack import DevStack
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask

API_KEY = "sk-live-test-0123456789abcdef-do-not-leak"
GOAL = "Summarise $(OPENAI_API_KEY) and $(OPSPAWN_MODEL_API_KEY) exactly as written"
WRITE_BUDGET = 8


def test_goal_reaches_the_runner_literally_and_the_key_stays_in_its_secret(
    start_test_operator: StartOperator,
    tasks: Tasks,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    tasks.core.patch_namespace(
        tasks.namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    tasks.core.create_namespaced_secret(
        tasks.namespace,
        {"metadata": {"name": "openai"}, "stringData": {"api-key": API_KEY}},
    )
    start_test_operator()
    tasks.create(
        agenttask(
            "literal",
            goal=GOAL,
            model={
                "provider": "openai",
                "name": "gpt-4.1-mini",
                "apiKeySecretRef": {"name": "openai", "key": "api-key"},
            },
            runner={"env": [{"name": "NOTE", "value": "$(OPSPAWN_MODEL_API_KEY)"}]},
        )
    )

    finished = wait_for(lambda: tasks.finished("literal"), 60, "the task to finish")

    # The Pod was admitted under `restricted`, and the runner saw the goal as written.
    assert finished["reason"] == "Completed"
    result = json.loads(tasks.status("literal")["result"]["preview"])
    assert result == {"goal": GOAL, "keyLength": len(API_KEY), "attempt": 1}

    job = tasks.jobs("literal")[0]
    job_text = json.dumps(kube_api.sanitize_for_serialization(job))
    assert "$(OPENAI_API_KEY)" not in job_text  # the goal travels in the per-task Secret
    assert "$$(OPSPAWN_MODEL_API_KEY)" in job_text  # the user's env value, escaped
    per_task = tasks.core.list_namespaced_secret(
        tasks.namespace, label_selector="opspawn.io/task-name=literal"
    ).items
    decoded = [base64.b64decode(v).decode() for s in per_task for v in (s.data or {}).values()]
    events = tasks.core.list_namespaced_event(tasks.namespace).items
    places = {
        "task": json.dumps(tasks.get("literal")),
        "job": job_text,
        "per-task secret": "\n".join(decoded),
        "events": json.dumps(kube_api.sanitize_for_serialization(events)),
        "operator log": "\n".join(p.read_text() for p in tmp_path.glob("operator-*.log")),
    }
    for place, text in places.items():
        assert API_KEY not in text, f"the API key leaked into the {place}"
    assert any(e.reason == "Launched" for e in events)


def test_one_task_lifecycle_costs_at_most_eight_apiserver_writes(
    start_test_operator: StartOperator, tasks: Tasks, stack: DevStack
) -> None:
    assert stack.control_plane is not None
    start_test_operator()
    tasks.create(agenttask("counted"))
    wait_for(lambda: tasks.finished("counted"), 60, "the task to finish")
    wait_for(
        lambda: any(
            e.reason == "Completed" for e in tasks.core.list_namespaced_event(tasks.namespace).items
        ),
        30,
        "the Completed event",
    )

    writes = []
    for line in stack.control_plane.audit_log_path.read_text().splitlines():
        entry = json.loads(line)
        if (
            entry.get("user", {}).get("username") == OPERATOR_USER
            and (entry.get("objectRef") or {}).get("namespace") == tasks.namespace
            and entry.get("stage") == "ResponseComplete"
        ):
            ref = entry["objectRef"]
            writes.append(f"{entry['verb']} {ref.get('resource')}/{ref.get('subresource', '')}")

    print(f"apiserver writes by the operator for one task: {len(writes)}: {writes}")
    assert 0 < len(writes) <= WRITE_BUDGET, writes
