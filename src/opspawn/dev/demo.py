"""`make demo`: bring the local stack up and run an AgentTask from the examples to the end.

It starts (or reuses) the dev stack (control plane, process kubelet, NATS, Postgres, mock
model, operator), creates the example's API-key Secret, shows that an invalid task is refused
at `kubectl apply` with the field named, applies `manifests/examples/openai-tools.yaml`,
follows it to completion and prints its final status and how to look further.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from opspawn.dev.stack import DevStack, read_state

WORKDIR = Path(".opspawn/dev").absolute()
EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"
EXAMPLE = EXAMPLES / "openai-tools.yaml"
TASK_NAME = "release-notes-summary"
NAMESPACE = "opspawn-demo"
FOLLOW_SECONDS = 180

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
        print((result.stdout + result.stderr).rstrip(), flush=True)
    return result


def _task(environment: dict[str, str]) -> dict[str, Any]:
    got = _kubectl(
        environment, "get", "agenttask", TASK_NAME, "-n", NAMESPACE, "-o", "json", show=False
    )
    return dict(json.loads(got.stdout)) if got.returncode == 0 else {}


def _follow(environment: dict[str, str]) -> dict[str, Any]:
    """Print each change of phase and condition until the task has finished."""
    shown: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + FOLLOW_SECONDS
    while time.monotonic() < deadline:
        status = _task(environment).get("status") or {}
        for condition in status.get("conditions") or []:
            key = (condition["type"], condition["status"], condition["reason"])
            if key not in shown:
                shown.add(key)
                print(
                    f"  {status.get('phase', ''):<10} {condition['type']}={condition['status']}"
                    f" ({condition['reason']}): {condition.get('message', '')}",
                    flush=True,
                )
            if condition["type"] == "Succeeded" and condition["status"] != "Unknown":
                return dict(status)
        time.sleep(0.5)
    raise SystemExit(f"the task did not finish within {FOLLOW_SECONDS}s; see {WORKDIR}/*.log")


def main() -> None:
    _step("starting the local stack (control plane, kubelet, NATS, Postgres, mock model, operator)")
    state = read_state(WORKDIR)
    if state is not None and state.all_alive:
        environment = state.environment
        print(f"already running (state in {WORKDIR})")
    else:
        stack = DevStack(WORKDIR, with_operator=True)
        environment = stack.start()
        stack.write_state()
    environment = {**os.environ, **environment}
    _kubectl(environment, "get", "nodes")

    _step(f"namespace {NAMESPACE} with the example's API-key Secret (the mock model takes any)")
    _kubectl(environment, "create", "namespace", NAMESPACE, show=False)
    _kubectl(
        environment,
        "create",
        "secret",
        "generic",
        "openai",
        "--from-literal=api-key=mock-key",
        "-n",
        NAMESPACE,
        show=False,
    )

    _step("an invalid AgentTask is refused at apply time, naming the field")
    _kubectl(environment, "apply", "-f", "-", stdin=json.dumps(INVALID_TASK))

    _step(f"applying {EXAMPLE.relative_to(EXAMPLES.parents[1])} and following it")
    _kubectl(
        environment,
        "delete",
        "agenttask",
        TASK_NAME,
        "-n",
        NAMESPACE,
        "--ignore-not-found",
        "--wait",
        show=False,
    )
    _kubectl(environment, "apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
    status = _follow(environment)

    _step("the result")
    _kubectl(environment, "get", "agenttasks", "-n", NAMESPACE)
    usage = status.get("usage") or {}
    print(
        f"\n  phase:    {status.get('phase')}  (attempt {status.get('attempt')},"
        f" Job {status.get('jobName')})\n"
        f"  steps:    {status.get('steps', 0)}\n"
        f"  tokens:   {usage.get('inputTokens', 0)} in / {usage.get('outputTokens', 0)} out"
        f"  (cost: {usage.get('costUSD', 'unknown')} USD)\n"
        f"  result:   {(status.get('result') or {}).get('preview', '')}"
    )

    _step("the audit trail (Postgres): what the runner did, step by step")
    subprocess.run(
        [sys.executable, "-m", "opspawn.cli", "audit", "events", f"{NAMESPACE}/{TASK_NAME}"],
        env=environment,
        check=False,
    )

    _step("look further")
    print(
        f"  source {WORKDIR / 'env'}   # KUBECONFIG, NATS_URL, DATABASE_URL, kubectl\n"
        f"  kubectl get agenttasks -A\n"
        f"  kubectl describe agenttask {TASK_NAME} -n {NAMESPACE}\n"
        f"  opspawn audit list            # every task and attempt, from Postgres\n"
        f"  opspawn audit show {NAMESPACE}/{TASK_NAME}\n"
        f"  opspawn logs {NAMESPACE}/{TASK_NAME}   # the live events from JetStream\n"
        "  kubectl explain agenttask.spec\n"
        f"  less {WORKDIR}/operator.log\n"
        "  make dev-down   # stop everything"
    )


if __name__ == "__main__":
    main()
