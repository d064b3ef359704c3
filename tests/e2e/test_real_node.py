"""What only a real node shows: runners as real containers of the project's image, with the
chart's memory limits, read-only root filesystem and NetworkPolicies enforced by the kernel, and
the operator's Deployment replaced by `helm upgrade` while a task runs.

The scenarios run on the `real` target only (`conftest.py`); the chart is installed once for the
module, with a scripted mock model (OpenAI wire) and a slow one (Anthropic wire) as the runners'
model endpoints, both on the host at the node's bridge address.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from opspawn.dev.binaries import control_plane_binaries
from opspawn.dev.helm import CHART, helm
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.realnode import host, network
from opspawn.dev.realnode.node import KUBELET_ROOT
from opspawn.dev.realnode.pods import restricted_pod
from opspawn.dev.stack import DevStack
from tests.e2e.conftest import ChartInstall, Cluster, StartChartOperator, poll

MCP_SERVER = [
    # A stdio MCP server written into the task: spec command items are at most 256 characters,
    # so the source travels in pieces that the first one joins.
    "python",
    "-c",
    "import sys; exec(chr(10).join(sys.argv[1:]))",
    "import os\nfrom mcp.server.mcpserver import MCPServer\n"
    "s = MCPServer('in-image', log_level='WARNING')",
    "@s.tool(description='Add two integers.')\ndef add(a: int, b: int) -> int:\n    return a + b",
    "@s.tool(description='Create a file on the root filesystem.')\ndef write_root() -> str:\n"
    "    try:\n        os.close(os.open('/var/tmp/mcp-was-here', os.O_CREAT | os.O_WRONLY))",
    "    except OSError as error:\n        return 'refused: ' + error.strerror\n"
    "    return 'written'",
    "s.run('stdio')",
]


class _CountingHandler(BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = b"the NetworkPolicy let this through\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@dataclasses.dataclass
class HostService:
    """An HTTP server on the host at the node's bridge address, outside every policy."""

    address: str
    port: int
    requests: list[str]

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"


@pytest.fixture(scope="module")
def unlisted_service(real_stack: DevStack) -> Iterator[HostService]:
    assert real_stack.real_node is not None
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    server = ThreadingHTTPServer((real_stack.real_node.address, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HostService(real_stack.real_node.address, server.server_address[1], requests)
    finally:
        server.shutdown()
        server.server_close()


def _script(unlisted: HostService) -> dict[str, Any]:
    """One tool-calling turn for every scenario of the module (a task is offered only its own
    tools; calls of tools it was not offered are refused and recorded), then the answer."""
    return {
        "turns": [
            {
                "tool_calls": [
                    {"name": "http_fetch", "arguments": {"url": unlisted.url}},
                    {"name": "local__add", "arguments": {"a": 2, "b": 3}},
                    {"name": "local__write_root", "arguments": {}},
                ]
            },
            {"text": "Done: every tool was tried once."},
        ]
    }


SLOW_SCRIPT = {"turns": [{"text": "A slow answer, for the upgrade.", "delay": 12}]}


def _mock_model(workdir: Path, name: str, script: dict[str, Any]) -> tuple[ManagedProcess, int]:
    """`opspawn dev mock-model --script` on a free port of 127.0.0.1."""
    script_path = workdir / f"{name}.yaml"
    script_path.write_text(yaml.safe_dump(script))
    port = free_port()
    process = ManagedProcess(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "opspawn.cli",
            "dev",
            "mock-model",
            "--port",
            str(port),
            "--script",
            str(script_path),
        ],
        log_path=workdir / f"{name}.log",
    )
    process.start()
    process.wait_ready(lambda: is_listening(port), timeout=30)
    return process, port


@pytest.fixture(scope="module")
def cluster(
    real_target: Cluster,
    real_stack: DevStack,
    unlisted_service: HostService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """The real target with this module's model endpoints (scripted, slow) in the chart."""
    assert real_stack.real_node is not None
    workdir = tmp_path_factory.mktemp("real-models")
    scripted, scripted_port = _mock_model(workdir, "scripted-model", _script(unlisted_service))
    slow, slow_port = _mock_model(workdir, "slow-model", SLOW_SCRIPT)
    ports = [scripted_port, slow_port]
    real_stack.real_node.expose("module-models", ports)
    address = real_stack.real_node.address
    values = json.loads(json.dumps(real_target.chart_values))
    values["networkPolicy"]["modelEndpoints"]["ports"] = ports
    try:
        yield dataclasses.replace(
            real_target,
            mock_model_url=f"http://{address}:{scripted_port}",
            model_base_urls={"anthropic": f"http://{address}:{slow_port}"},
            chart_values=values,
        )
    finally:
        slow.stop()
        scripted.stop()


def _task(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name},
        "spec": {
            "goal": "Try the tools you are given.",
            "model": {
                "provider": "openai",
                "name": "gpt-4.1-mini",
                "apiKeySecretRef": {"name": "model-key", "key": "api-key"},
            },
            "limits": {"maxSteps": 5, "timeoutSeconds": 120},
            **spec,
        },
    }


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    applied = subprocess.run(
        [*_kubectl_argv(cluster), "apply", "-n", namespace, "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr


def _kubectl_argv(cluster: Cluster) -> list[str]:
    return [str(control_plane_binaries()["kubectl"]), "--kubeconfig", str(cluster.kubeconfig)]


def _get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    got = cluster.kubectl("get", *what, "-o", "json", namespace=namespace)
    assert got.returncode == 0, got.stderr
    parsed: dict[str, Any] = json.loads(got.stdout)
    return parsed


def _finished(cluster: Cluster, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The task once its phase is final (Succeeded, Failed, …)."""
    final = {"Succeeded", "Failed", "Cancelled", "TimedOut"}

    def done() -> bool:
        status = _get(cluster, namespace, "agenttask", name).get("status") or {}
        return status.get("phase") in final

    try:
        poll(done, timeout, f"task {name} finished")
    except AssertionError:
        task = _get(cluster, namespace, "agenttask", name)
        raise AssertionError(f"{name} not finished: {json.dumps(task.get('status'))}") from None
    return _get(cluster, namespace, "agenttask", name)


def _audit(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    exported = subprocess.run(
        [sys.executable, "-m", "opspawn.cli", "audit", "export", f"{namespace}/{name}"],
        env={**os.environ, "DATABASE_URL": cluster.host_database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    return [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]


def _events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record["record"] == "event"]


@pytest.fixture(scope="module")
def model_key(cluster: Cluster, chart_install: ChartInstall) -> None:
    created = cluster.kubectl(
        "create",
        "secret",
        "generic",
        "model-key",
        "--from-literal=api-key=mock-key",
        namespace=chart_install.watched,
    )
    assert created.returncode == 0, created.stderr


def _pods(cluster: Cluster, namespace: str, task: str) -> list[dict[str, Any]]:
    listed = _get(cluster, namespace, "pods", "-l", f"opspawn.io/task-name={task}")
    items: list[dict[str, Any]] = listed["items"]
    return items


def test_runner_over_its_memory_limit_is_oom_killed_and_retried_as_spec_retry_says(
    cluster: Cluster,
    chart_install: ChartInstall,
    start_chart_operator: StartChartOperator,
    model_key: None,
) -> None:
    start_chart_operator()
    name = "too-little-memory"
    _apply(
        cluster,
        chart_install.watched,
        _task(
            name,
            runner={"resources": {"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}}},
            retry={"limit": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 1}},
        ),
    )
    task = _finished(cluster, chart_install.watched, name, timeout=180)
    status = task["status"]
    assert status["phase"] == "Failed", status
    assert status["attempt"] == 2, status  # the first attempt and the one retry spec.retry allows
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    # Retries used up: the condition says so, and names the last attempt's classified reason.
    assert (succeeded["status"], succeeded["reason"]) == ("False", "BackoffLimitExceeded")
    assert "attempt 2: OOMKilled: the runner went over its memory limit" in succeeded["message"]
    # Both attempts are in the audit trail.
    attempts = [r for r in _audit(cluster, chart_install.watched, name) if r["record"] == "task"]
    assert sorted(a["attempt"] for a in attempts) == [1, 2], attempts
    # The kernel killed the container: the kubelet says so in the runner Pods left.
    pods = _pods(cluster, chart_install.watched, name)
    assert pods
    for pod in pods:
        (container,) = pod["status"]["containerStatuses"]
        assert container["state"]["terminated"]["reason"] == "OOMKilled", container


def test_network_policy_lets_runners_reach_nats_and_the_model_and_nothing_else(
    cluster: Cluster,
    chart_install: ChartInstall,
    start_chart_operator: StartChartOperator,
    model_key: None,
    unlisted_service: HostService,
) -> None:
    start_chart_operator()
    name = "fetch-outside-policy"
    host_rule = f"{unlisted_service.address}:{unlisted_service.port}"
    # The task allow-lists the host for http_fetch; the chart's runner policy does not.
    _apply(
        cluster,
        chart_install.watched,
        _task(
            name,
            tools={
                "builtin": [
                    {"name": "http_fetch", "allowedHosts": [host_rule], "timeoutSeconds": 5}
                ]
            },
        ),
    )
    task = _finished(cluster, chart_install.watched, name, timeout=120)
    # NATS and the model endpoint were reachable: the task ran to its answer, in status.
    assert task["status"]["phase"] == "Succeeded", task["status"]
    results = [
        event["payload"]
        for event in _events(_audit(cluster, chart_install.watched, name))
        if event["type"] == "tool_result" and event["payload"].get("tool") == "http_fetch"
    ]
    assert len(results) == 1 and results[0]["isError"], results
    assert unlisted_service.requests == []  # not a byte of the request got through
    # The service itself answers: from a Pod outside the runner policy (the operator's
    # namespace has none) the same URL works.
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    image = cluster.chart_values["image"]
    fetch = f"import urllib.request; urllib.request.urlopen({unlisted_service.url!r}, timeout=10)"
    _apply(
        cluster,
        chart_install.namespace,
        restricted_pod(probe, f"{image['repository']}:{image['tag']}", ["python", "-c", fetch]),
    )

    def probe_phase() -> str:
        pod = _get(cluster, chart_install.namespace, "pod", probe)
        return str(pod["status"].get("phase"))

    poll(lambda: probe_phase() in ("Succeeded", "Failed"), 60, "the probe Pod finished")
    assert probe_phase() == "Succeeded"
    assert unlisted_service.requests == ["/"]


def test_mcp_stdio_server_runs_inside_the_read_only_runner_container(
    cluster: Cluster,
    chart_install: ChartInstall,
    start_chart_operator: StartChartOperator,
    model_key: None,
) -> None:
    start_chart_operator()
    name = "mcp-in-image"
    server = {
        "name": "local",
        "command": MCP_SERVER,
        "allowedTools": ["add", "write_root"],
    }
    _apply(cluster, chart_install.watched, _task(name, tools={"mcpServers": [server]}))
    task = _finished(cluster, chart_install.watched, name, timeout=120)
    assert task["status"]["phase"] == "Succeeded", task["status"]
    results = {
        event["payload"]["tool"]: event["payload"]
        for event in _events(_audit(cluster, chart_install.watched, name))
        if event["type"] == "tool_result"
    }
    assert results["local__add"]["content"] == "5", results
    assert results["local__write_root"]["content"] == "refused: Read-only file system", results


def test_helm_upgrade_to_a_new_image_tag_loses_no_event_and_duplicates_no_job(
    cluster: Cluster,
    real_stack: DevStack,
    chart_install: ChartInstall,
    start_chart_operator: StartChartOperator,
    model_key: None,
) -> None:
    start_chart_operator()
    assert real_stack.real_node is not None
    image = cluster.chart_values["image"]
    new_tag = f"{image['tag']}-upgrade"
    tagged = real_stack.real_node.containerd.ctr(
        "images",
        "tag",
        "--force",
        f"{image['repository']}:{image['tag']}",
        f"{image['repository']}:{new_tag}",
    )
    assert tagged.returncode == 0, tagged.stderr
    name = "through-an-upgrade"
    task = _task(name)
    task["spec"]["model"].update(provider="anthropic", name="claude-haiku-4-5")
    _apply(cluster, chart_install.watched, task)
    poll(
        lambda: (
            (_get(cluster, chart_install.watched, "agenttask", name).get("status") or {}).get(
                "phase"
            )
            == "Running"
        ),
        60,
        "the task Running",
    )
    upgraded = helm(
        "upgrade",
        chart_install.release,
        str(CHART),
        "--namespace",
        chart_install.namespace,
        "--reuse-values",
        "--set",
        f"image.tag={new_tag}",
        kubeconfig=cluster.kubeconfig,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    start_chart_operator()  # the new ReplicaSet rolled out through its probes
    deployment = _get(cluster, chart_install.namespace, "deployment", chart_install.deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{new_tag}")

    finished = _finished(cluster, chart_install.watched, name, timeout=120)
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    assert finished["status"]["attempt"] == 1
    jobs = _get(cluster, chart_install.watched, "jobs", "-l", f"opspawn.io/task-name={name}")
    assert len(jobs["items"]) == 1
    events = _events(_audit(cluster, chart_install.watched, name))
    sequences = [event["sequence"] for event in events]
    assert sequences == list(range(1, len(sequences) + 1)), sequences  # none lost, none twice
    assert events[-1]["type"] == "finished"
    assert len({event["event_id"] for event in events}) == len(events)


@pytest.mark.real_node_last
def test_stopping_the_node_leaves_nothing_on_the_machine(real_stack: DevStack) -> None:
    """Runs last (see conftest.py): the node stops with the module's Pods still running."""
    node = real_stack.real_node
    assert node is not None
    workdir = str(node.workdir)
    assert host.processes_mentioning(workdir), "the node was not running"
    node.stop()
    assert host.processes_mentioning(workdir) == []
    assert host.processes_mentioning(str(node.containerd.socket)) == []
    assert host.mounts_under(node.workdir) == []
    assert host.mounts_under(KUBELET_ROOT) == []
    assert host.mounts_under(node.containerd_root) == []
    assert host.kubepods_cgroups() == []
    assert not network.bridge_exists()
    assert network.owned_rules() == []
    assert network.owned_ipsets() == []
