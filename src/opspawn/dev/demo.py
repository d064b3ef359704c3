"""`make demo`: bring the local stack up and show what it does today.

It starts (or reuses) the dev stack, applies the example AgentTasks, shows that an invalid one
is refused at `kubectl apply` with the field named, runs a Job on the process kubelet to
completion, and says how to look further. The operator and runner (later issues) turn the
applied AgentTasks into runner Jobs; until then they wait with no status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from opspawn.dev.stack import DevStack, read_state

WORKDIR = Path(".opspawn/dev").absolute()
EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"
NAMESPACE = "opspawn-demo"

INVALID_TASK = {
    "apiVersion": "opspawn.io/v1alpha1",
    "kind": "AgentTask",
    "metadata": {"name": "invalid", "namespace": NAMESPACE},
    "spec": {
        "goal": "Fetch a page.",
        "model": {"provider": "openai", "name": "gpt-4.1-mini"},
        "tools": {"builtin": [{"name": "http_fetch"}]},
    },
}

SAMPLE_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "hello", "namespace": NAMESPACE},
    "spec": {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 300,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "opspawn/runner:dev",
                        "command": [
                            sys.executable,
                            "-c",
                            "print('hello from the process kubelet')",
                        ],
                    }
                ],
            }
        },
    },
}


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _kubectl(
    environment: dict[str, str], *args: str, stdin: str | None = None, show: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if show:
        print((result.stdout + result.stderr).rstrip())
    return result


def main() -> None:
    _step("starting the local stack (control plane, process kubelet, NATS, Postgres)")
    state = read_state(WORKDIR)
    if state is not None and state.all_alive:
        environment = state.environment
        print(f"already running (state in {WORKDIR})")
    else:
        stack = DevStack(WORKDIR)
        environment = stack.start()
        stack.write_state()
    environment = {**os.environ, **environment}
    _kubectl(environment, "get", "nodes")

    _step(f"applying the example AgentTasks into namespace {NAMESPACE}")
    _kubectl(environment, "create", "namespace", NAMESPACE, show=False)
    _kubectl(environment, "apply", "--namespace", NAMESPACE, "-f", str(EXAMPLES))
    _kubectl(environment, "get", "agenttasks", "--namespace", NAMESPACE)

    _step("an invalid AgentTask is refused at apply time, naming the field")
    _kubectl(environment, "apply", "-f", "-", stdin=json.dumps(INVALID_TASK))

    _step("a Job runs on the process kubelet under the real Job controller")
    _kubectl(
        environment,
        "delete",
        "job",
        "hello",
        "--namespace",
        NAMESPACE,
        "--ignore-not-found",
        show=False,
    )
    _kubectl(environment, "apply", "-f", "-", stdin=json.dumps(SAMPLE_JOB))
    _kubectl(
        environment,
        "wait",
        "--for=condition=Complete",
        "job/hello",
        "--namespace",
        NAMESPACE,
        "--timeout=60s",
    )
    time.sleep(0.5)
    _kubectl(environment, "get", "pods", "--namespace", NAMESPACE, "-o", "wide")

    _step("look further")
    print(
        f"  source {WORKDIR / 'env'}   # KUBECONFIG, NATS_URL, DATABASE_URL, kubectl\n"
        "  kubectl get agenttasks -A\n"
        "  kubectl explain agenttask.spec\n"
        "  make dev-down   # stop everything"
    )


if __name__ == "__main__":
    main()
