"""The operator as a process of the local stack: its RBAC identity and how it is started.

The operator runs as user `opspawn:operator` (a client certificate), bound to a ClusterRole
with exactly `opspawn.operator.rbac.OPERATOR_RULES`, so the dev stack and the tests exercise
the same permissions the Helm chart grants.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.controlplane import ControlPlane
from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.rbac import grant_cluster_role
from opspawn.operator.rbac import OPERATOR_RULES

OPERATOR_USER = "opspawn:operator"
RUNNER_IMAGE = "opspawn/runner:dev"
"""What runner Jobs name as their image; the process kubelet runs the command, not images."""
RUNNER_COMMAND = (sys.executable, "-m", "opspawn.runner")
"""The real runner, as the process kubelet starts it."""


def operator_kubeconfig(control_plane: ControlPlane) -> Path:
    """A kubeconfig for the operator's identity, with its ClusterRole granted."""
    grant_cluster_role(control_plane.kubeconfig, OPERATOR_USER, OPERATOR_USER, OPERATOR_RULES)
    return control_plane.kubeconfig_for("operator", OPERATOR_USER)


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own endpoint)
        return bool(response.status == 200)


@dataclass
class OperatorProcess:
    """`opspawn operator` started in the background, with its health port."""

    process: ManagedProcess
    health_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/metrics"

    def stop(self) -> None:
        self.process.stop()


def start_operator(
    *,
    kubeconfig: Path,
    nats_url: str,
    log_path: Path,
    args: Sequence[str] = (),
    name: str = "operator",
    timeout: float = 60.0,
) -> OperatorProcess:
    """Start the operator and wait until it reports ready (`/readyz`)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "opspawn.cli",
        "operator",
        "--kubeconfig",
        str(kubeconfig),
        "--nats-url",
        nats_url,
        "--health-port",
        str(port),
        "--runner-image",
        RUNNER_IMAGE,
        *args,
    ]
    process = ManagedProcess(name=name, argv=argv, log_path=log_path, env=dict(os.environ))
    process.start()
    try:
        process.wait_ready(lambda: _answers(f"http://127.0.0.1:{port}/readyz"), timeout)
    except BaseException:
        process.stop()
        raise
    return OperatorProcess(process=process, health_port=port)
