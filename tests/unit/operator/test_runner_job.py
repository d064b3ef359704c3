"""The runner Job and per-task Secret: deterministic names, env-only input, no expansion."""

from __future__ import annotations

import json
from typing import Any

from opspawn.api.agenttask import admitted_spec_digest
from opspawn.operator.runner_job import (
    RunnerSettings,
    build_runner_job,
    build_task_secret,
    escape_expansion,
    job_name,
)

GOAL = "Summarise $(OPSPAWN_MODEL_API_KEY) and $(HOME) literally"
TASK: dict[str, Any] = {
    "apiVersion": "opspawn.io/v1alpha1",
    "kind": "AgentTask",
    "metadata": {
        "name": "summarise",
        "namespace": "team-a",
        "uid": "0f4c2a9e-1111-2222-3333-444455556666",
    },
    "spec": {
        "goal": GOAL,
        "model": {
            "provider": "openai",
            "name": "gpt-4.1-mini",
            "apiKeySecretRef": {"name": "openai", "key": "api-key"},
        },
        "limits": {"timeoutSeconds": 120},
        "runner": {
            "env": [{"name": "MODE", "value": "$(OPSPAWN_SIGNING_KEY)"}],
            "nodeSelector": {"pool": "agents"},
        },
        "queue": "research",
    },
}
SETTINGS = RunnerSettings(image="opspawn:test", nats_url="nats://nats.opspawn:4222")


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_names_are_deterministic_bounded_and_distinct_per_attempt() -> None:
    long_name = "x" * 253
    names = {job_name(long_name, "uid-1", attempt) for attempt in (1, 2, 3)}
    assert len(names) == 3
    assert all(len(name) <= 63 for name in names)
    assert job_name("summarise", "uid-1", 1) == job_name("summarise", "uid-1", 1)
    assert job_name("summarise", "uid-1", 1) != job_name("summarise", "uid-2", 1)


def test_user_text_never_reaches_env_values_command_or_args() -> None:
    job = build_runner_job(TASK, 1, SETTINGS)
    container = _container(job)
    literal_texts = [entry.get("value", "") for entry in container["env"]] + container["command"]
    assert not any(GOAL in text for text in literal_texts)
    by_name = {entry["name"]: entry for entry in container["env"]}
    assert by_name["OPSPAWN_TASK_SPEC"]["valueFrom"]["secretKeyRef"]["key"] == "spec.json"
    assert by_name["OPSPAWN_MODEL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "openai",
        "key": "api-key",
    }
    assert by_name["MODE"]["value"] == "$$(OPSPAWN_SIGNING_KEY)", "user env must stay literal"
    secret = build_task_secret(TASK, "k" * 32)
    assert json.loads(secret["stringData"]["spec.json"])["goal"] == GOAL


def test_job_shape() -> None:
    job = build_runner_job(TASK, 2, SETTINGS)
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 150
    assert job["metadata"]["ownerReferences"][0]["controller"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert job["metadata"]["labels"]["opspawn.io/attempt"] == "2"
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"pool": "agents"}
    security = _container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_root_filesystem_is_read_only_and_tmp_is_an_empty_dir() -> None:
    """HOME is /tmp in the image: the one writable place is an emptyDir mounted there."""
    job = build_runner_job(TASK, 1, SETTINGS)
    pod, container = job["spec"]["template"]["spec"], _container(job)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]


def test_escape_expansion() -> None:
    assert escape_expansion("$(A) $$ $") == "$$(A) $$$$ $$"


def test_the_job_pins_the_spec_the_secret_carries() -> None:
    """The runner refuses a per-task Secret edited after launch by this digest (a Job's Pod
    template cannot be edited); the mutable fields may change without breaking it."""
    job = build_runner_job(TASK, 1, SETTINGS)
    env = {e["name"]: e for e in _container(job)["env"]}
    secret = build_task_secret(TASK, "k" * 32, SETTINGS)
    spec_in_secret = json.loads(secret["stringData"]["spec.json"])

    pinned = env["OPSPAWN_TASK_SPEC_DIGEST"]["value"]
    assert pinned == admitted_spec_digest(spec_in_secret)
    assert pinned == admitted_spec_digest({**spec_in_secret, "suspend": True, "priority": 9})
    assert pinned != admitted_spec_digest({**spec_in_secret, "goal": "something else"})
