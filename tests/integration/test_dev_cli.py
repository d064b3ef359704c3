"""`opspawn dev up | status | env | demo | down` as a user runs them, in a directory of their
own; `make demo` is `opspawn dev demo`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from opspawn.dev.processes import pid_alive
from opspawn.fakes.server import FakeModelServer

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


KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
DEMO_TASK = "opspawn-demo/release-notes-summary"


def _opspawn(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opspawn.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def _without_provider_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}


def _assert_demo_succeeded(output: str, model: str) -> None:
    """What a user of `make demo` is shown: progress to Succeeded, the cost, the audit trail
    and where to look further."""
    progress = re.findall(r"^ +[0-9.]+s  [A-Z][a-z]+ +step .*$", output, re.MULTILINE)
    assert re.match(r" +[0-9.]+s  Pending ", progress[0]), output  # the first state seen
    final = r"Succeeded +step 2 +[0-9,]+ tokens +\$0\.[0-9]+ +finished: Completed after 2 steps"
    assert re.search(final, progress[-1]), output
    assert "outcome:  Succeeded (Completed)" in output, output
    assert re.search(rf"cost: +\$0\.[0-9]+ for {model}, from the runner's price table", output)
    for audit_row in (
        r"1 +1 +started +" + model,
        r"llm_call +step 1 " + model,
        r"finished +exit 0",
    ):
        assert re.search(audit_row, output), f"no audit row {audit_row!r} in:\n{output}"
    for hint in (
        "/env   # KUBECONFIG",
        "kubectl get agenttasks -A",
        f"opspawn audit show {DEMO_TASK}",
        f"opspawn logs {DEMO_TASK}",
    ):
        assert hint in output, f"no hint {hint!r} in:\n{output}"


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

        # `make demo` on the running stack: the example, answered by the mock model.
        demo = _opspawn("dev", "demo", "--dir", str(workdir), env=_without_provider_keys())
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Model: the mock model" in demo.stdout
        assert f"reusing the stack running in {workdir}" in demo.stdout
        _assert_demo_succeeded(demo.stdout, "openai/gpt-4.1-mini")
    finally:
        down = _opspawn("dev", "down", "--dir", str(workdir))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p["pgid"]) for p in state["processes"])
    assert not (workdir / "state.json").exists()
    assert _opspawn("dev", "status", "--dir", str(workdir)).returncode == 1


@pytest.mark.anyio
async def test_demo_with_a_provider_key_runs_on_that_provider_and_never_shows_the_key(
    tmp_path: Path,
) -> None:
    """OPENAI_API_KEY exported: the demo's task runs on OpenAI (here the fake provider server,
    through OPENAI_BASE_URL) with that key, which appears in no output and no log."""
    workdir = tmp_path / "dev"
    key = "sk-demo-" + secrets.token_hex(16)
    async with FakeModelServer() as provider:
        env = {
            **_without_provider_keys(),
            "OPENAI_API_KEY": key,
            "OPENAI_BASE_URL": provider.openai_base_url,
        }
        try:
            demo = await asyncio.to_thread(_opspawn, "dev", "demo", "--dir", str(workdir), env=env)
            logs = "".join(path.read_text(errors="replace") for path in workdir.glob("**/*.log"))
        finally:
            down = await asyncio.to_thread(_opspawn, "dev", "down", "--dir", str(workdir))
        keys_sent = [
            {k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {key}"
            for r in provider.requests
        ]
    shown = demo.stdout + demo.stderr
    assert key not in shown, "the API key appears in the demo's output"
    assert key not in logs, "the API key appears in a log of the stack"
    assert demo.returncode == 0, shown
    assert f"Model: openai/gpt-4.1-mini at {provider.openai_base_url}" in demo.stdout
    assert "secret/openai: the key from $OPENAI_API_KEY (never printed)" in demo.stdout
    _assert_demo_succeeded(demo.stdout, "openai/gpt-4.1-mini")
    assert keys_sent and all(keys_sent), "the provider did not get the exported key"
    assert down.returncode == 0, down.stderr
