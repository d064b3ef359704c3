"""Shared fixtures: the local stack (one per pytest worker) and a namespace per test.

The stack is the same `DevStack` that `opspawn dev up` runs: a real control plane, the process
kubelet, NATS with JetStream and Postgres, each on free ports. Tests that need it use the
`stack` fixture (or one built on it) and are marked `stack` automatically.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from kubernetes import client, config

from opspawn.dev.stack import DevStack

STACK_FIXTURES = {"stack", "kube_api", "namespace", "kubectl"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev_stack = DevStack(tmp_path_factory.mktemp("stack"), audit_log=True)
    dev_stack.start()
    try:
        yield dev_stack
    finally:
        dev_stack.stop()


@pytest.fixture(scope="session")
def kube_api(stack: DevStack) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name, "labels": {"opspawn.io/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_runner(binary: str, environment: Mapping[str, str], timeout: float) -> Kubectl:
    """Run `binary` (a kubectl) with `environment`; returns the completed process (never
    raises on failure)."""

    def run(
        *args: str, stdin: str | None = None, namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [binary, *args]
        if namespace is not None:
            argv += ["--namespace", namespace]
        return subprocess.run(
            argv,
            input=stdin,
            env=dict(environment),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def kubectl(stack: DevStack) -> Kubectl:
    """Run the stack's kubectl; returns the completed process (never raises on failure)."""
    return kubectl_runner("kubectl", {**os.environ, **stack.environment()}, timeout=60)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
