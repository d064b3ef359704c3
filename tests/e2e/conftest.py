"""The chart installed with `helm install`, on two targets that run the same scenarios.

`cluster` is parametrized:

- `local`: the local control plane of the dev stack. No container runtime exists there, so the
  Deployment's Pod is admitted and scheduled but its container never starts. The operator runs
  instead as a local process with exactly the Deployment's environment (the Secret reference
  resolved) and command, authenticated by a TokenRequest token of the chart's ServiceAccount: the
  chart's settings and the chart's RBAC are what the tests exercise.
- `kind`: a kind cluster (pytest-kind) with the image built from the Dockerfile; the operator is
  the chart's Deployment and runner Jobs use the same image (`kind.py`). Skipped, with the reason,
  where `docker info` fails or pytest-kind or the kind binary is missing.
- `real`: the local control plane with a real node (`opspawn.dev.realnode`: containerd, kubelet,
  kube-proxy, kube-router) and the image the project builds (`opspawn.dev.image`): the operator is
  the chart's Deployment, probes, securityContext, memory limits and NetworkPolicies are enforced.
  NATS, Postgres and the mock model are the dev stack's, reached by Pods at the node's bridge
  address. One node per machine: its tests form one xdist group (one worker), and the node's
  lock makes other processes wait. Skipped, with the reason, where the machine cannot run it
  (not root, no containerd …); `.ci/run` installs what it needs.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from _pytest.nodeid import coerce_node_id
from kubernetes import client, config

from opspawn.dev.binaries import control_plane_binaries
from opspawn.dev.helm import CHART, helm
from opspawn.dev.image import ImageArchive, build_project_image
from opspawn.dev.nats import NatsServer
from opspawn.dev.operator_process import RUNNER_COMMAND
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.postgres import DATABASE, USER, Postgres
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.realnode import prerequisites as realnode_prerequisites
from opspawn.dev.realnode.chart import real_node_values
from opspawn.dev.stack import DevStack
from tests.conftest import Kubectl, kubectl_runner
from tests.e2e import kind

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
AUDIT_SECRET = "opspawn-audit"
NATS_AUTH_SECRET = "opspawn-nats-auth"
KIND_TIMEOUT = 1200
"""Seconds per test on kind: the first one builds the image and creates the cluster."""
REAL_TIMEOUT = 1500
"""Seconds per test on the real node: the first one may build the node's binaries (cold: about
260 s for the kubelet, 190 s for kube-router), the image and import it."""
REAL_GROUP = "real-node"
REAL_FIXTURES = {"real_target", "real_stack"}


@dataclass(frozen=True)
class Cluster:
    """Where the scenarios run, and how its workloads reach the services on the host."""

    name: str
    kubeconfig: Path
    kubectl: Kubectl
    nats_url: str
    """NATS, as the operator and runner Pods reach it."""
    database_url: str
    """The audit store, as the operator reaches it (the chart's Secret holds it)."""
    host_database_url: str
    """The audit store, as the tests reach it."""
    mock_model_url: str
    """The mock model, as runner Pods reach it."""
    operator_in_cluster: bool
    """The operator runs as the chart's Deployment (else as a local process, see the module)."""
    runner_command: str | None = None
    """The chart's `runner.command`; None: the chart's default (the image's `opspawn runner`)."""
    chart_values: dict[str, Any] = field(default_factory=dict)
    """Top-level values of this target that the scenarios do not set."""
    model_base_urls: dict[str, str] = field(default_factory=dict)
    """Providers whose runners go elsewhere than `mock_model_url` (OpenAI's wire)."""
    nats_auth: dict[str, str] | None = None
    """The chart's NATS auth Secret (`account`, `signing-key`) when NATS runs with auth."""


def _nats_auth(nats: NatsServer) -> dict[str, str] | None:
    if nats.trust is None:
        return None
    return {
        "account": nats.trust.account_public_key,
        "signing-key": nats.signing_key_file.read_text(),
    }


class _XdistGroups:
    """`--dist loadgroup` for pytest 9: xdist 3.8 renames grouped items by assigning
    `item._nodeid`, which pytest 9 no longer reads (the id lives in `item._id`), so every group
    was spread over the workers. This gives the items the `@group` suffix the scheduler groups
    by, after xdist's own hook (harmless once xdist does it itself)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        for item in items:
            names = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
            if names and "@" not in item.nodeid:
                item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_XdistGroups(), "opspawn-xdist-groups")
    config.addinivalue_line(
        "markers", "real_node_last: stops the session's real node, so it runs after the others"
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the xdist_group markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The local variants need the local stack: mark them as the stack's own tests are. The real
    node's tests all go to one xdist worker (one node per machine), the one that stops it last."""
    last = [item for item in items if item.get_closest_marker("real_node_last")]
    items[:] = [item for item in items if item not in last] + last
    for item in items:
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("cluster") if callspec is not None else None
        if target == "local":
            item.add_marker(pytest.mark.stack)
        if target == "real" or REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(REAL_GROUP))
            item.add_marker(pytest.mark.timeout(REAL_TIMEOUT))


def _kubectl(kubeconfig: Path) -> Kubectl:
    """Run the pinned kubectl against `kubeconfig`; returns the completed process."""
    binary = str(control_plane_binaries()["kubectl"])
    return kubectl_runner(binary, {**os.environ, "KUBECONFIG": str(kubeconfig)}, timeout=240)


@pytest.fixture(scope="session")
def mock_model_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The dev stack's mock model (`opspawn dev mock-model`) on 127.0.0.1, a process of its own."""
    port = free_port()
    process = ManagedProcess(
        name="mock-model",
        argv=[sys.executable, "-m", "opspawn.cli", "dev", "mock-model", "--port", str(port)],
        log_path=tmp_path_factory.mktemp("mock-model") / "mock-model.log",
    )
    process.start()
    try:
        process.wait_ready(lambda: is_listening(port), timeout=30)
        yield port
    finally:
        process.stop()


@pytest.fixture(scope="session")
def local_target(stack: DevStack, mock_model_port: int) -> Cluster:
    assert stack.nats is not None and stack.postgres is not None
    return Cluster(
        name="local",
        kubeconfig=stack.kubeconfig,
        kubectl=_kubectl(stack.kubeconfig),
        nats_url=stack.nats.url,
        database_url=stack.postgres.url,
        host_database_url=stack.postgres.url,
        mock_model_url=f"http://127.0.0.1:{mock_model_port}",
        operator_in_cluster=False,
        runner_command=shlex.join(RUNNER_COMMAND),
        nats_auth=_nats_auth(stack.nats),
    )


@pytest.fixture(scope="session")
def kind_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A kind cluster with the Dockerfile's image; NATS, Postgres and the mock model on the host,
    reached through relays on kind's network gateway (see `kind.py`). Skipped, before anything
    starts, when the machine cannot run it."""
    kind_bin = kind.kind_binary(request.config.getoption("kind_bin", None))
    reason = kind.unavailable(kind_bin)
    if reason is not None:
        pytest.skip(reason)
    assert kind_bin is not None
    mock_model_port: int = request.getfixturevalue("mock_model_port")
    workdir = tmp_path_factory.mktemp("kind")
    kind.build_image()
    nats = NatsServer(workdir / "nats")
    postgres = Postgres(workdir / "postgres")
    relays: list[kind.Relay] = []
    try:
        nats.start()
        postgres.start()
        with kind.kind_cluster(
            f"opspawn-e2e-{uuid.uuid4().hex[:8]}",
            workdir,
            kind_bin,
            request.config.getoption("kind_image", None),
            control_plane_binaries()["kubectl"],
        ) as kubeconfig:
            gateway = kind.network_gateway()
            relays += [kind.Relay(gateway, port) for port in (nats.port, postgres.port)]
            relays.append(kind.Relay(gateway, mock_model_port))
            nats_relay, postgres_relay, model_relay = relays
            yield Cluster(
                name="kind",
                kubeconfig=kubeconfig,
                kubectl=_kubectl(kubeconfig),
                nats_url=f"nats://{nats_relay.address}",
                database_url=f"postgresql+psycopg://{USER}@{postgres_relay.address}/{DATABASE}",
                host_database_url=postgres.url,
                mock_model_url=f"http://{model_relay.address}",
                operator_in_cluster=True,
                chart_values={
                    "image": {
                        "repository": kind.IMAGE_REPOSITORY,
                        "tag": kind.IMAGE_TAG,
                        "pullPolicy": "Never",
                    },
                    # Runner Pods may reach NATS and the mock model on the host.
                    "networkPolicy": {
                        "extraEgress": [
                            {
                                "to": [{"ipBlock": {"cidr": f"{gateway}/32"}}],
                                "ports": [
                                    {"protocol": "TCP", "port": relay.port}
                                    for relay in (nats_relay, model_relay)
                                ],
                            }
                        ]
                    },
                },
            )
    finally:
        for relay in relays:
            relay.close()
        postgres.stop()
        nats.stop()


_REAL_STACKS: list[DevStack] = []
"""The session's real-node stack, for `release_real_stacks`."""


def release_real_stacks() -> None:
    """Stop this session's real node (if it runs) so that another can take the machine."""
    for stack in _REAL_STACKS:
        if stack.real_node is not None:
            stack.real_node.stop()


@pytest.fixture(scope="session")
def project_image() -> ImageArchive:
    """The project's image for the sources as they are at the start of the session."""
    return build_project_image()


@pytest.fixture(scope="session")
def real_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    """The dev stack with a real node instead of the process kubelet, the project's image
    imported into its containerd. Skipped, before anything starts, where the machine cannot run
    a real node."""
    reason = realnode_prerequisites.missing()
    if reason is not None:
        pytest.skip(reason)
    mock_model_port: int = request.getfixturevalue("mock_model_port")
    image: ImageArchive = request.getfixturevalue("project_image")
    stack = DevStack(tmp_path_factory.mktemp("real"), node="real")
    stack.start()
    _REAL_STACKS.append(stack)
    try:
        assert stack.real_node is not None
        stack.real_node.expose("mock-model", [mock_model_port])
        stack.real_node.import_image(image.archive)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def real_target(real_stack: DevStack, mock_model_port: int, project_image: ImageArchive) -> Cluster:
    assert real_stack.nats is not None and real_stack.postgres is not None
    assert real_stack.real_node is not None
    address = real_stack.real_node.address
    return Cluster(
        name="real",
        kubeconfig=real_stack.kubeconfig,
        kubectl=_kubectl(real_stack.kubeconfig),
        nats_url=f"nats://{address}:{real_stack.nats.port}",
        database_url=f"postgresql+psycopg://{USER}@{address}:{real_stack.postgres.port}/{DATABASE}",
        host_database_url=real_stack.postgres.url,
        mock_model_url=f"http://{address}:{mock_model_port}",
        operator_in_cluster=True,
        nats_auth=_nats_auth(real_stack.nats),
        chart_values=real_node_values(
            project_image.reference, address, real_stack.nats.port, [mock_model_port]
        ),
    )


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("local"),
        pytest.param("kind", marks=pytest.mark.timeout(KIND_TIMEOUT)),
        pytest.param("real"),
    ],
)
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The target of the scenarios: `local`, `kind` or `real`."""
    target: Cluster = request.getfixturevalue(f"{request.param}_target")
    return target


@pytest.fixture(scope="module")
def cluster_api(cluster: Cluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@dataclass(frozen=True)
class ChartInstall:
    release: str
    namespace: str
    """The release's namespace (the operator's)."""
    watched: str
    """The one namespace the operator serves; enforces Pod Security `restricted`."""
    health_port: int

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.release}-opspawn"

    @property
    def deployment(self) -> str:
        return f"{self.release}-opspawn"


def _create_namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace(
        {"metadata": {"name": name, "labels": {**RESTRICTED, "opspawn.io/test": "true"}}}
    )


@pytest.fixture(scope="module")
def chart_install(
    cluster: Cluster,
    cluster_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartInstall]:
    """`helm install` of the chart serving one namespace, with the audit store's DSN in a Secret."""
    suffix = uuid.uuid4().hex[:8]
    install = ChartInstall(
        release=f"e2e-{suffix}",
        namespace=f"opspawn-{suffix}",
        watched=f"agents-{suffix}",
        health_port=free_port(),
    )
    core = client.CoreV1Api(cluster_api)
    for name in (install.namespace, install.watched):
        _create_namespace(core, name)
    core.create_namespaced_secret(
        install.namespace,
        {"metadata": {"name": AUDIT_SECRET}, "stringData": {"url": cluster.database_url}},
    )
    nats: dict[str, Any] = {"url": cluster.nats_url}
    if cluster.nats_auth is not None:
        core.create_namespaced_secret(
            install.namespace,
            {"metadata": {"name": NATS_AUTH_SECRET}, "stringData": cluster.nats_auth},
        )
        nats["auth"] = {"existingSecret": NATS_AUTH_SECRET}
    runner = {} if cluster.runner_command is None else {"command": cluster.runner_command}
    values = {
        **cluster.chart_values,
        "watchNamespaces": [install.watched],
        "nats": nats,
        "auditStore": {"existingSecret": AUDIT_SECRET},
        "runner": {
            **runner,
            "modelBaseURLs": {"openai": f"{cluster.mock_model_url}/v1", **cluster.model_base_urls},
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
        kubeconfig=cluster.kubeconfig,
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
            kubeconfig=cluster.kubeconfig,
        )
        for name in (install.namespace, install.watched):
            core.delete_namespace(name)


def _service_account_kubeconfig(cluster: Cluster, install: ChartInstall, path: Path) -> Path:
    """A kubeconfig authenticating with a TokenRequest token of the chart's ServiceAccount."""
    account = install.service_account.rsplit(":", 1)[1]
    token = cluster.kubectl(
        "create", "token", account, "--duration=1h", namespace=install.namespace
    )
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stack", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "stack", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
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


StartChartOperator = Callable[[], None]


@pytest.fixture
def start_chart_operator(
    cluster: Cluster,
    cluster_api: client.ApiClient,
    chart_install: ChartInstall,
    tmp_path: Path,
) -> Iterator[StartChartOperator]:
    """Have the chart's operator running and ready: on kind the Deployment's rollout; locally
    `opspawn` with the installed Deployment's args and environment, as its ServiceAccount."""
    started: list[ManagedProcess] = []

    def start() -> None:
        if cluster.operator_in_cluster:
            rolled_out = cluster.kubectl(
                "rollout",
                "status",
                f"deployment/{chart_install.deployment}",
                "--timeout=180s",
                namespace=chart_install.namespace,
            )
            assert rolled_out.returncode == 0, rolled_out.stderr
            return
        apps = client.AppsV1Api(cluster_api)
        deployment = apps.read_namespaced_deployment(
            chart_install.deployment, chart_install.namespace
        )
        (container,) = deployment.spec.template.spec.containers
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("OPSPAWN_OPERATOR_") and key not in ("DATABASE_URL", "KUBECONFIG")
        }
        environment.update(
            _resolved_environment(cluster_api, chart_install.namespace, container.env)
        )
        if cluster.nats_auth is not None:  # the chart mounts the seed; here it is a file of ours
            seed = tmp_path / "nats-signing-key"
            seed.write_text(cluster.nats_auth["signing-key"])
            seed.chmod(0o600)
            environment["OPSPAWN_OPERATOR_NATS_SIGNING_KEY_FILE"] = str(seed)
        kubeconfig = _service_account_kubeconfig(
            cluster, chart_install, tmp_path / "operator.kubeconfig"
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
