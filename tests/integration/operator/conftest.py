"""Operator fixtures: `opspawn operator` as a process of its own per test, serving only the
test's namespace, under the operator's RBAC identity, with a fake runner command."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from opspawn.dev.operator_process import OperatorProcess, operator_kubeconfig, start_operator
from opspawn.dev.stack import DevStack

FAKE_RUNNER = Path(__file__).with_name("fake_runner.py")
FAKE_RUNNER_COMMAND = shlex.join([sys.executable, str(FAKE_RUNNER)])

StartOperator = Callable[..., OperatorProcess]


@pytest.fixture(scope="session")
def operator_kubeconfig_path(stack: DevStack) -> Path:
    assert stack.control_plane is not None
    return operator_kubeconfig(stack.control_plane)


@pytest.fixture
def start_test_operator(
    stack: DevStack, namespace: str, operator_kubeconfig_path: Path, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start operators for the test's namespace (extra CLI options as arguments)."""
    started: list[OperatorProcess] = []
    assert stack.nats is not None

    def start(
        *args: str, runner_command: str = FAKE_RUNNER_COMMAND, nats_url: str | None = None
    ) -> OperatorProcess:
        operator = start_operator(
            kubeconfig=operator_kubeconfig_path,
            nats_url=nats_url or (stack.nats.url if stack.nats else ""),
            log_path=tmp_path / f"operator-{len(started)}.log",
            args=[
                # The stack's NATS runs with auth: the operator mints the runners' users.
                *(stack.nats.operator_auth_args() if stack.nats and not nats_url else []),
                "--namespace",
                namespace,
                "--runner-command",
                runner_command,
                "--deadline-grace-seconds",
                "2",
                "--termination-grace-seconds",
                "5",
                *args,
            ],
        )
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()


def agenttask(name: str, **spec: Any) -> dict[str, Any]:
    """An AgentTask for the fake runner (model openai-compatible: no key needed)."""
    body: dict[str, Any] = {
        "goal": f"goal of {name}",
        "model": {"provider": "openai-compatible", "name": "fake", "baseURL": "http://127.0.0.1:9"},
        "retry": {"limit": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    }
    body.update(spec)
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name},
        "spec": body,
    }


class Tasks:
    """AgentTasks of one namespace, through the admin client."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            "opspawn.io", "v1alpha1", self.namespace, "agenttasks", body
        )
        return created

    def get(self, name: str) -> dict[str, Any]:
        task: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "opspawn.io", "v1alpha1", self.namespace, "agenttasks", name
        )
        return task

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            "opspawn.io", "v1alpha1", self.namespace, "agenttasks", name, {"spec": spec}
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in self.status(name).get("conditions") or []:
            if condition["type"] == kind:
                return dict(condition)
        return None

    def finished(self, name: str) -> dict[str, Any] | None:
        """The Succeeded condition once it is True or False."""
        condition = self.condition(name, "Succeeded")
        return condition if condition and condition["status"] != "Unknown" else None

    def jobs(self, name: str | None = None) -> list[Any]:
        selector = (
            f"opspawn.io/task-name={name}" if name else "app.kubernetes.io/managed-by=opspawn"
        )
        return list(self.batch.list_namespaced_job(self.namespace, label_selector=selector).items)

    def pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace).items)

    def running_pods(self) -> list[Any]:
        return [p for p in self.pods() if p.status.phase in ("Pending", "Running")]


@pytest.fixture
def tasks(kube_api: client.ApiClient, namespace: str) -> Tasks:
    return Tasks(kube_api, namespace)
