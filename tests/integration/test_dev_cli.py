"""`opspawn dev up | status | env | down` as a user runs them, in a directory of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opspawn.dev.processes import pid_alive

TASK = {
    "apiVersion": "opspawn.io/v1alpha1",
    "kind": "AgentTask",
    "metadata": {"name": "dev-smoke", "namespace": "default"},
    "spec": {
        "goal": "What time is it?",
        "model": {
            "provider": "openai-compatible",
            "name": "mock",
            "baseURL": "http://models:8000/v1",
        },
        "tools": {"builtin": [{"name": "current_time"}]},
    },
}


def _opspawn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opspawn.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_dev_up_is_idempotent_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    up = _opspawn("dev", "up", "--dir", str(workdir))
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((workdir / "state.json").read_text())
        names = [p["name"] for p in state["processes"]]
        assert names == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "process-kubelet",
            "nats-server",
            "postgres",
            "weaviate",
            "mock-model",
            "operator",
        ]
        env_file = (workdir / "env").read_text()
        for variable in ("KUBECONFIG", "NATS_URL", "DATABASE_URL", "OPSPAWN_WEAVIATE_URL", "PATH"):
            assert f"export {variable}=" in env_file

        again = _opspawn("dev", "up", "--dir", str(workdir))
        assert again.returncode == 0 and "already running" in again.stdout
        assert json.loads((workdir / "state.json").read_text()) == state

        status = _opspawn("dev", "status", "--dir", str(workdir))
        assert status.returncode == 0 and status.stdout.count("running") == 9

        exports = _opspawn("dev", "env", "--dir", str(workdir)).stdout
        environment = dict(os.environ)
        for line in exports.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            environment[key] = value.strip("'")
        nodes = subprocess.run(
            ["kubectl", "get", "nodes", "-o", "name"],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert nodes.stdout.strip() == "node/opspawn-process-kubelet"

        # The operator runs an AgentTask with the real runner against the mock model.
        applied = subprocess.run(
            ["kubectl", "apply", "-f", "-"],
            input=json.dumps(TASK),
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        waited = subprocess.run(
            [
                "kubectl",
                "wait",
                "--for=condition=Succeeded",
                "agenttask/dev-smoke",
                "--timeout=120s",
                "-o",
                "jsonpath={.status.result.preview}",
            ],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert waited.returncode == 0, waited.stderr
        assert "The mock model finished the task" in waited.stdout
    finally:
        down = _opspawn("dev", "down", "--dir", str(workdir))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p["pgid"]) for p in state["processes"])
    assert not (workdir / "state.json").exists()
    assert _opspawn("dev", "status", "--dir", str(workdir)).returncode == 1
