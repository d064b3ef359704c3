"""The chart installed with `helm install` on the local stack, and its operator run as the chart's
ServiceAccount.

No container runtime exists here, so the Deployment's Pod is admitted and scheduled but its
container never starts. The operator runs instead as a local process with exactly the Deployment's
environment (the Secret reference resolved) and command, authenticated by a TokenRequest token of
the chart's ServiceAccount: the chart's settings and the chart's RBAC are what the tests exercise.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from opspawn.dev.helm import CHART, helm
from opspawn.dev.operator_process import RUNNER_COMMAND
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.stack import DevStack
from tests.conftest import Kubectl

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
AUDIT_SECRET = "opspawn-audit"


@dataclass(frozen=True)
class ChartInstall:
    release: str
    namespace: str
    """The release's namespace (the operator's)."""
    watched: str
    """The one namespace the operator serves; enforces Pod Security `restricted`."""
    health_port: int
    mock_model_url: str

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.release}-opspawn"


def _create_namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace(
        {"metadata": {"name": name, "labels": {**RESTRICTED, "opspawn.io/test": "true"}}}
    )


@pytest.fixture(scope="module")
def mock_model(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dev stack's mock model (`opspawn dev mock-model`), as a process of its own."""
    port = free_port()
    process = ManagedProcess(
        name="mock-model",
        argv=[sys.executable, "-m", "opspawn.cli", "dev", "mock-model", "--port", str(port)],
        log_path=tmp_path_factory.mktemp("mock-model") / "mock-model.log",
    )
    process.start()
    try:
        process.wait_ready(lambda: is_listening(port), timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def chart_install(
    stack: DevStack,
    kube_api: client.ApiClient,
    mock_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartInstall]:
    """`helm install` of the chart serving one namespace, with the audit store's DSN in a Secret."""
    assert stack.nats is not None and stack.postgres is not None
    suffix = uuid.uuid4().hex[:8]
    install = ChartInstall(
        release=f"e2e-{suffix}",
        namespace=f"opspawn-{suffix}",
        watched=f"agents-{suffix}",
        health_port=free_port(),
        mock_model_url=mock_model,
    )
    core = client.CoreV1Api(kube_api)
    for name in (install.namespace, install.watched):
        _create_namespace(core, name)
    core.create_namespaced_secret(
        install.namespace,
        {"metadata": {"name": AUDIT_SECRET}, "stringData": {"url": stack.postgres.url}},
    )
    values = {
        "watchNamespaces": [install.watched],
        "nats": {"url": stack.nats.url},
        "auditStore": {"existingSecret": AUDIT_SECRET},
        "runner": {
            "command": shlex.join(RUNNER_COMMAND),
            "modelBaseURLs": {"openai": f"{mock_model}/v1"},
            "deadlineGraceSeconds": 5,
            "terminationGraceSeconds": 5,
        },
        "operator": {"healthPort": install.health_port, "logFormat": "text"},
    }
    values_path = tmp_path_factory.mktemp("chart") / "values.json"
    values_path.write_text(json.dumps(values))
    installed = helm(
        "install",
        install.release,
        str(CHART),
        "--namespace",
        install.namespace,
        "-f",
        str(values_path),
        kubeconfig=stack.kubeconfig,
    )
    assert installed.returncode == 0, installed.stderr
    try:
        yield install
    finally:
        helm(
            "uninstall",
            install.release,
            "--namespace",
            install.namespace,
            kubeconfig=stack.kubeconfig,
        )
        for name in (install.namespace, install.watched):
            core.delete_namespace(name)


def _service_account_kubeconfig(
    stack: DevStack, install: ChartInstall, kubectl: Kubectl, path: Path
) -> Path:
    """A kubeconfig authenticating with a TokenRequest token of the chart's ServiceAccount."""
    account = install.service_account.rsplit(":", 1)[1]
    token = kubectl("create", "token", account, "--duration=1h", namespace=install.namespace)
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(stack.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stack", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "stack", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _resolved_environment(
    kube_api: client.ApiClient, namespace: str, env: list[Any]
) -> dict[str, str]:
    """The container's environment as the kubelet would give it (values and Secret keys)."""
    core = client.CoreV1Api(kube_api)
    resolved: dict[str, str] = {}
    for variable in env:
        if variable.value_from is None:
            resolved[variable.name] = variable.value or ""
            continue
        reference = variable.value_from.secret_key_ref
        secret = core.read_namespaced_secret(reference.name, namespace)
        resolved[variable.name] = base64.b64decode(secret.data[reference.key]).decode()
    return resolved


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # our own endpoint
        return bool(response.status == 200)


StartChartOperator = Callable[[], ManagedProcess]


@pytest.fixture
def start_chart_operator(
    stack: DevStack,
    kube_api: client.ApiClient,
    chart_install: ChartInstall,
    kubectl: Kubectl,
    tmp_path: Path,
) -> Iterator[StartChartOperator]:
    """Start `opspawn` with the installed Deployment's args and environment, as its
    ServiceAccount, and wait for /readyz."""
    started: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        apps = client.AppsV1Api(kube_api)
        deployment = apps.read_namespaced_deployment(
            f"{chart_install.release}-opspawn", chart_install.namespace
        )
        (container,) = deployment.spec.template.spec.containers
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("OPSPAWN_OPERATOR_") and key not in ("DATABASE_URL", "KUBECONFIG")
        }
        environment.update(_resolved_environment(kube_api, chart_install.namespace, container.env))
        kubeconfig = _service_account_kubeconfig(
            stack, chart_install, kubectl, tmp_path / "operator.kubeconfig"
        )
        process = ManagedProcess(
            name="chart-operator",
            # The image's entrypoint is `opspawn`; in-cluster config is replaced by the token.
            argv=[
                sys.executable,
                "-m",
                "opspawn.cli",
                *container.args,
                "--kubeconfig",
                str(kubeconfig),
            ],
            log_path=tmp_path / "chart-operator.log",
            env=environment,
        )
        process.start()
        started.append(process)
        process.wait_ready(
            lambda: _ready(f"http://127.0.0.1:{chart_install.health_port}/readyz"), timeout=60
        )
        return process

    yield start
    for process in started:
        process.stop()


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)
