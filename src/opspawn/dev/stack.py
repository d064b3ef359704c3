"""The whole local stack: control plane + CRDs, process kubelet, NATS, Postgres, and for
`opspawn dev up` Weaviate (long-term memory), the mock model and the operator.

`DevStack.start()` brings everything up under one work directory and writes `env` there
(KUBECONFIG, NATS_URL, DATABASE_URL, and PATH with the matching kubectl); `stop()` stops
everything in reverse order. The pytest fixtures use it directly; `opspawn dev up` uses it and
records the process groups in `state.json`, so that `opspawn dev down` (another process) can
stop them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kubernetes import client, config

from opspawn.api.crd import agenttask_crd
from opspawn.dev.binaries import control_plane_binaries
from opspawn.dev.controlplane import ControlPlane
from opspawn.dev.kubelet.kubelet import DEFAULT_NODE_NAME
from opspawn.dev.nats import NatsServer
from opspawn.dev.operator_process import (
    RUNNER_COMMAND,
    OperatorProcess,
    operator_kubeconfig,
    start_operator,
)
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.postgres import Postgres
from opspawn.dev.processes import ManagedProcess, pid_alive, stop_process_group
from opspawn.dev.rbac import grant_cluster_role
from opspawn.dev.realnode.node import RealNode
from opspawn.dev.tools import tool_binary
from opspawn.dev.weaviate import WeaviateServer

KUBELET_USER = "opspawn:process-kubelet"
KUBELET_RULES = [
    {
        "apiGroups": [""],
        "resources": ["nodes"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
]
"""What the process kubelet may do: a node's and a scheduler's share, no more."""

STATE_FILE = "state.json"
ENV_FILE = "env"


@dataclass
class DevStack:
    """Every component of the local stack, under `workdir`."""

    workdir: Path
    with_nats: bool = True
    nats_auth: bool = True
    """NATS in operator mode: the operator mints every runner's user (off only for benchmarks
    that measure raw throughput with clients of their own)."""
    with_postgres: bool = True
    audit_log: bool = False
    with_operator: bool = False
    """Also run the mock model and `opspawn operator` (with the real runner), as
    `opspawn dev up` does; the tests start operators of their own instead."""
    with_weaviate: bool = False
    """Also run Weaviate, and point the operator's runners at it for long-term memory."""
    with_mock_model: bool = False
    """The mock model without the operator (`opspawn dev up --node real`: the chart's operator)."""
    node: Literal["process", "real"] = "process"
    """`real`: a real node (`opspawn.dev.realnode`: containerd, kubelet, kube-proxy,
    kube-router) instead of the process kubelet; NATS, Postgres and the mock model are then
    also reachable from Pods at the node's bridge address."""
    provider_endpoints: Mapping[str, str | None] = field(default_factory=dict)
    """Providers whose model calls do not go to the mock model: to the URL given, or (None) to
    the provider's own endpoint (`make demo` with a real API key)."""
    control_plane: ControlPlane | None = None
    nats: NatsServer | None = None
    postgres: Postgres | None = None
    weaviate: WeaviateServer | None = None
    kubelet: ManagedProcess | None = None
    real_node: RealNode | None = None
    mock_model: ManagedProcess | None = None
    mock_model_url: str | None = None
    model_base_urls: dict[str, str] = field(default_factory=dict)
    """The operator's `--model-base-url`s: where each provider's calls go instead of its own
    endpoint."""
    operator: OperatorProcess | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.workdir / ENV_FILE

    def start(self) -> dict[str, str]:
        """Start everything; on failure stop what was started and re-raise."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, str]:
        binaries = control_plane_binaries()
        self.control_plane = ControlPlane(
            self.workdir / "control-plane", binaries, audit_log=self.audit_log
        )
        self.control_plane.start()
        self.kubeconfig.write_bytes(self.control_plane.kubeconfig.read_bytes())
        self.kubeconfig.chmod(0o600)
        install_crds(self.kubeconfig)
        if self.node == "real":
            self.real_node = RealNode(self.workdir / "real-node")
            self.real_node.start(self.control_plane)
        else:
            self._start_kubelet(self.control_plane)
        if self.with_nats:
            self.nats = NatsServer(self.workdir / "nats", auth=self.nats_auth)
            self.nats.start()
        if self.with_postgres:
            self.postgres = Postgres(self.workdir / "postgres")
            self.postgres.start()
        if self.with_weaviate:
            self.weaviate = WeaviateServer(self.workdir / "weaviate")
            self.weaviate.start()
        if self.with_operator:
            self._start_operator(self.control_plane)
        elif self.with_mock_model:
            self._start_mock_model()
        if self.real_node is not None:
            self.real_node.expose("services", self._host_service_ports())
        environment = self.environment()
        self.env_file.write_text(
            "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())
        )
        return environment

    def _host_service_ports(self) -> list[int]:
        ports = [server.port for server in (self.nats, self.postgres) if server is not None]
        if self.mock_model_url is not None:
            ports.append(int(self.mock_model_url.rsplit(":", 1)[1]))
        return ports

    def _start_kubelet(self, control_plane: ControlPlane) -> None:
        grant_cluster_role(self.kubeconfig, KUBELET_USER, KUBELET_USER, KUBELET_RULES)
        kubeconfig = control_plane.kubeconfig_for("process-kubelet", KUBELET_USER)
        self.kubelet = ManagedProcess(
            name="process-kubelet",
            argv=[
                sys.executable,
                "-m",
                "opspawn.dev.kubelet",
                "--kubeconfig",
                str(kubeconfig),
                "--workdir",
                str(self.workdir / "kubelet"),
                "--node-name",
                DEFAULT_NODE_NAME,
            ],
            log_path=self.workdir / "process-kubelet.log",
            env={
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        )
        self.kubelet.start()
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core = client.CoreV1Api(api)

        def node_ready() -> bool:
            node = core.read_node(DEFAULT_NODE_NAME)
            return any(
                c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
            )

        try:
            self.kubelet.wait_ready(node_ready, timeout=30)
        finally:
            api.close()

    def _start_mock_model(self) -> str:
        port = free_port()
        self.mock_model = ManagedProcess(
            name="mock-model",
            argv=[sys.executable, "-m", "opspawn.cli", "dev", "mock-model", "--port", str(port)],
            log_path=self.workdir / "mock-model.log",
        )
        self.mock_model.start()
        self.mock_model.wait_ready(lambda: is_listening(port), timeout=30)
        self.mock_model_url = f"http://127.0.0.1:{port}"
        return self.mock_model_url

    def _start_operator(self, control_plane: ControlPlane) -> None:
        if self.nats is None:
            raise ValueError("the operator needs NATS: start the stack with with_nats=True")
        mock_model_url = self._start_mock_model()
        base_urls = {
            "openai": f"{mock_model_url}/v1",
            "openai-compatible": f"{mock_model_url}/v1",
            "anthropic": mock_model_url,
            "google": mock_model_url,
        }
        for provider, endpoint in self.provider_endpoints.items():
            if endpoint is None:
                base_urls.pop(provider, None)
            else:
                base_urls[provider] = endpoint
        self.model_base_urls = base_urls
        self.operator = start_operator(
            kubeconfig=operator_kubeconfig(control_plane),
            nats_url=self.nats.url,
            log_path=self.workdir / "operator.log",
            args=[
                "--runner-command",
                shlex.join(RUNNER_COMMAND),
                "--log-format",
                "text",
                *(f"--model-base-url={p}={url}" for p, url in base_urls.items()),
                *(["--database-url", self.postgres.url] if self.postgres else []),
                *self.nats.operator_auth_args(),
                *(
                    [
                        f"--weaviate-url={self.weaviate.url}",
                        f"--weaviate-grpc-address={self.weaviate.grpc_address}",
                        f"--weaviate-api-key-file={self.weaviate.admin_key_file}",
                    ]
                    if self.weaviate
                    else []
                ),
            ],
        )

    def environment(self) -> dict[str, str]:
        """What a shell (or a test) needs to talk to the stack."""
        directories = [
            str(control_plane_binaries()["kubectl"].parent),
            str(Path(sys.executable).parent),  # the `opspawn` command
            os.environ.get("PATH", ""),
        ]
        environment = {"KUBECONFIG": str(self.kubeconfig), "PATH": os.pathsep.join(directories)}
        if self.nats is not None:
            environment["NATS_URL"] = self.nats.url
            if self.nats.admin_credentials is not None:
                environment["NATS_CREDS"] = str(self.nats.admin_credentials)
        if self.postgres is not None:
            environment["DATABASE_URL"] = self.postgres.url
        if self.weaviate is not None:
            environment["OPSPAWN_WEAVIATE_URL"] = self.weaviate.url
            environment["OPSPAWN_WEAVIATE_GRPC_ADDRESS"] = self.weaviate.grpc_address
        if self.mock_model_url is not None:
            environment["OPSPAWN_MOCK_MODEL_URL"] = self.mock_model_url
        if self.operator is not None:
            environment["OPSPAWN_OPERATOR_METRICS_URL"] = self.operator.metrics_url
        if self.real_node is not None:
            environment.update(self._real_node_environment(self.real_node, environment["PATH"]))
        return environment

    def _real_node_environment(self, node: RealNode, path: str) -> dict[str, str]:
        """Where Pods on the real node reach the host's services; helm on PATH for the chart."""
        environment = {
            "OPSPAWN_NODE_ADDRESS": node.address,
            "PATH": os.pathsep.join([str(tool_binary("helm").parent), path]),
        }
        if self.postgres is not None:
            environment["OPSPAWN_NODE_DATABASE_URL"] = self.postgres.url.replace(
                "127.0.0.1", node.address
            )
        if self.nats is not None:
            environment["OPSPAWN_NODE_NATS_URL"] = self.nats.url.replace("127.0.0.1", node.address)
        return environment

    def processes(self) -> list[ManagedProcess]:
        """Every process of the stack, in start order."""
        found = list(self.control_plane.processes) if self.control_plane else []
        if self.kubelet is not None:
            found.append(self.kubelet)
        if self.real_node is not None:
            found += self.real_node.all_processes()
        for server in (self.nats, self.postgres, self.weaviate):
            if server is not None and server.process is not None:
                found.append(server.process)
        if self.mock_model is not None:
            found.append(self.mock_model)
        if self.operator is not None:
            found.append(self.operator.process)
        return found

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.mock_model is not None:
            self.mock_model.stop()
        if self.weaviate is not None:
            self.weaviate.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.nats is not None:
            self.nats.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.real_node is not None:
            self.real_node.stop()
        if self.control_plane is not None:
            self.control_plane.stop()

    # ------------------------------------------------------------------ across processes

    def write_state(self) -> None:
        """Record the process groups and cleanup paths so `opspawn dev down` can stop them."""
        state = {
            "processes": [
                {"name": p.name, "pgid": p.pid, "shutdown_signal": p.shutdown_signal}
                for p in self.processes()
            ],
            "remove": [str(self.postgres.data_root)]
            if self.postgres and self.postgres.data_root
            else [],
            "environment": self.environment(),
            "real_node": str(self.real_node.workdir) if self.real_node else None,
            "model_base_urls": self.model_base_urls,
            "started": time.time(),
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))


@dataclass(frozen=True)
class RecordedProcess:
    name: str
    pgid: int
    shutdown_signal: signal.Signals | None = None

    @property
    def alive(self) -> bool:
        return pid_alive(self.pgid)


@dataclass(frozen=True)
class StackState:
    """What `opspawn dev up` left in `state.json` for later commands."""

    processes: list[RecordedProcess]
    remove: list[str]
    environment: dict[str, str]
    model_base_urls: dict[str, str]
    """Where the operator sends each provider's calls instead of its own endpoint."""
    real_node: str | None = None
    """The real node's work dir, whose leftovers `opspawn dev down` removes."""

    @property
    def all_alive(self) -> bool:
        return all(process.alive for process in self.processes)


def read_state(workdir: Path) -> StackState | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return StackState(
        processes=[
            RecordedProcess(
                str(p["name"]),
                int(p["pgid"]),
                signal.Signals(p["shutdown_signal"]) if p.get("shutdown_signal") else None,
            )
            for p in raw["processes"]
        ],
        remove=[str(item) for item in raw.get("remove", [])],
        environment={str(k): str(v) for k, v in raw["environment"].items()},
        model_base_urls={str(k): str(v) for k, v in raw.get("model_base_urls", {}).items()},
        real_node=raw.get("real_node"),
    )


def stop_recorded(workdir: Path) -> list[str]:
    """Stop every process group recorded in the state file, newest first; their names."""
    state = read_state(workdir)
    if state is None:
        return []
    for process in reversed(state.processes):
        stop_process_group(process.pgid, shutdown_signal=process.shutdown_signal)
    if state.real_node is not None:
        RealNode(Path(state.real_node)).clean_up_after_stop()
    for path in state.remove:
        shutil.rmtree(path, ignore_errors=True)
    (workdir / STATE_FILE).unlink()
    return [process.name for process in reversed(state.processes)]


def install_crds(kubeconfig: Path, timeout: float = 30.0) -> None:
    """Create or update the AgentTask CRD and wait until it is Established."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        extensions = client.ApiextensionsV1Api(api)
        crd = agenttask_crd()
        name = crd["metadata"]["name"]
        try:
            extensions.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise
            existing = extensions.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
            extensions.replace_custom_resource_definition(name, crd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = extensions.read_custom_resource_definition(name)
            conditions = current.status.conditions or [] if current.status else []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                return
            time.sleep(0.1)
        raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
    finally:
        api.close()
