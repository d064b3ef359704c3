"""Real-node benchmark: AgentTask applied → runner container started, against a plain Pod's start
on the same node in the same run; the image build and its import into containerd.

    .venv/bin/python bench/realnode.py [--tasks 100] [--in-flight 5]

Starts the dev stack with a real node (`DevStack(node="real")`, root and containerd needed),
builds the project image (`opspawn.dev.image`, cached by the sources' hash) and imports it,
installs the chart with that image (the operator as its Deployment, as the e2e `real` target
does), then:

- pod_start: `--tasks` plain Pods of the same image (a restricted securityContext, a command that
  sleeps) created `--in-flight` at a time: creation → container running, as the kubelet reports
  it (the physical limit: what the node takes to start a container);
- task_start: as many AgentTasks (the mock model answers) applied the same way: apply → the
  runner container running (the operator's admission, Secret and Job, the Job controller's Pod,
  the scheduler, the kubelet), p50/p99 and the ratio of the medians to pod_start's;
- node_start, image_build, image_import: seconds.

Prints one JSON line per figure and writes them all to bench/results/realnode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from figures import emit, write_results
from kubernetes import client, config, watch

from opspawn.dev.binaries import control_plane_binaries
from opspawn.dev.helm import CHART, helm
from opspawn.dev.image import ImageArchive, build_project_image
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.postgres import DATABASE, USER
from opspawn.dev.processes import ManagedProcess
from opspawn.dev.realnode import prerequisites
from opspawn.dev.realnode.chart import real_node_values
from opspawn.dev.realnode.pods import restricted_pod
from opspawn.dev.stack import DevStack

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
TASK_LABEL = "opspawn.io/task-name"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class StartWatch:
    """When each Pod of a namespace first has a running container, keyed by `key(pod)`."""

    def __init__(
        self, core: client.CoreV1Api, namespace: str, key: Callable[[Any], str | None]
    ) -> None:
        self.running: dict[str, float] = {}
        self._stop = threading.Event()
        self._core, self._namespace, self._key = core, namespace, key
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        stream = watch.Watch()
        while not self._stop.is_set():
            for event in stream.stream(
                self._core.list_namespaced_pod, self._namespace, timeout_seconds=5
            ):
                pod = event["object"]
                key = self._key(pod)
                statuses = pod.status.container_statuses or [] if pod.status else []
                if key and key not in self.running and any(s.state.running for s in statuses):
                    self.running[key] = time.monotonic()

    def wait_for(self, keys: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(key not in self.running for key in keys):
            if time.monotonic() > deadline:
                missing = [key for key in keys if key not in self.running]
                raise TimeoutError(f"not running within {timeout:.0f}s: {missing}")
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()


def measure(
    names: list[str], create: Callable[[str], None], starts: StartWatch, in_flight: int
) -> list[float]:
    """Seconds from create to running for each name, `in_flight` at a time."""
    created: dict[str, float] = {}
    for first in range(0, len(names), in_flight):
        batch = names[first : first + in_flight]
        for name in batch:
            created[name] = time.monotonic()
            create(name)
        starts.wait_for(batch, timeout=300)
    return [starts.running[name] - created[name] for name in names]


def plain_pod(name: str, image: str) -> dict[str, Any]:
    return restricted_pod(
        name, image, ["python", "-c", "import time; time.sleep(30)"], labels={"bench": "plain-pod"}
    )


def agent_task(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name},
        "spec": {
            "goal": "Answer at once.",
            "model": {
                "provider": "openai",
                "name": "gpt-4.1-mini",
                "apiKeySecretRef": {"name": "model-key", "key": "api-key"},
            },
            "limits": {"maxSteps": 2, "timeoutSeconds": 300},
        },
    }


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(seconds), 3),
        "p99_s": round(percentile(seconds, 0.99), 3),
        "max_s": round(max(seconds), 3),
    }


def install_chart(stack: DevStack, image: ImageArchive, mock_port: int) -> str:
    """`helm install` of the chart serving one new restricted namespace, as the e2e `real`
    target does; the namespace's name."""
    node, nats, postgres = stack.real_node, stack.nats, stack.postgres
    if node is None or nats is None or postgres is None:
        raise RuntimeError("the benchmark needs the real node, NATS and Postgres")
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))
    try:
        core = client.CoreV1Api(api)
        suffix = uuid.uuid4().hex[:6]
        system, watched = f"opspawn-{suffix}", f"agents-{suffix}"
        for namespace in (system, watched):
            core.create_namespace({"metadata": {"name": namespace, "labels": RESTRICTED}})
        database = f"postgresql+psycopg://{USER}@{node.address}:{postgres.port}/{DATABASE}"
        core.create_namespaced_secret(
            system, {"metadata": {"name": "audit"}, "stringData": {"url": database}}
        )
        core.create_namespaced_secret(
            watched, {"metadata": {"name": "model-key"}, "stringData": {"api-key": "mock"}}
        )
        if nats.trust is not None:
            nats_auth = {
                "account": nats.trust.account_public_key,
                "signing-key": nats.signing_key_file.read_text(),
            }
            core.create_namespaced_secret(
                system, {"metadata": {"name": "nats-auth"}, "stringData": nats_auth}
            )
    finally:
        api.close()
    values: dict[str, Any] = {
        **real_node_values(image.reference, node.address, nats.port, [mock_port]),
        "watchNamespaces": [watched],
        "auditStore": {"existingSecret": "audit"},
        "runner": {"modelBaseURLs": {"openai": f"http://{node.address}:{mock_port}/v1"}},
    }
    if nats.trust is not None:
        values["nats"]["auth"] = {"existingSecret": "nats-auth"}
    values_path = stack.workdir / "bench-values.json"
    values_path.write_text(json.dumps(values))
    installed = helm(
        "install",
        "bench",
        str(CHART),
        "--namespace",
        system,
        "-f",
        str(values_path),
        kubeconfig=stack.kubeconfig,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"helm install failed: {installed.stderr}")
    rolled_out = subprocess.run(
        [
            str(control_plane_binaries()["kubectl"]),
            f"--kubeconfig={stack.kubeconfig}",
            f"--namespace={system}",
            "rollout",
            "status",
            "deployment/bench-opspawn",
            "--timeout=600s",
        ],
        capture_output=True,
        text=True,
        timeout=660,
        check=False,
    )
    if rolled_out.returncode != 0:
        raise RuntimeError(f"the operator did not roll out: {rolled_out.stderr}")
    return watched


def _pod_key(pod: Any) -> str:
    """A runner Pod by its task's name, any other Pod by its own."""
    labels = pod.metadata.labels or {}
    return str(labels.get(TASK_LABEL) or pod.metadata.name)


def measure_starts(
    stack: DevStack, image: ImageArchive, namespace: str, count: int, in_flight: int
) -> tuple[list[float], list[float]]:
    """Seconds to a running container: plain Pods, then runners of AgentTasks."""
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    starts = StartWatch(core, namespace, _pod_key)
    try:
        pods = measure(
            [f"plain-{i}" for i in range(count)],
            lambda name: core.create_namespaced_pod(namespace, plain_pod(name, image.reference)),
            starts,
            in_flight,
        )
        runners = measure(
            [f"task-{i}" for i in range(count)],
            lambda name: custom.create_namespaced_custom_object(
                "opspawn.io", "v1alpha1", namespace, "agenttasks", agent_task(name)
            ),
            starts,
            in_flight,
        )
    finally:
        starts.close()
        api.close()
    return pods, runners


def run(count: int, in_flight: int, figures: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    image = build_project_image()
    build_seconds = round(time.monotonic() - started, 1)
    size_mb = round(image.size_bytes / 1e6)
    emit(figures, {"figure": "image_build", "seconds": build_seconds, "size_mb": size_mb})
    stack = DevStack(Path(tempfile.mkdtemp(prefix="bench-realnode-")), node="real")
    stack.start()
    mock_port = free_port()
    mock = ManagedProcess(
        name="mock-model",
        argv=[sys.executable, "-m", "opspawn.cli", "dev", "mock-model", "--port", str(mock_port)],
        log_path=stack.workdir / "mock-model.log",
    )
    try:
        node = stack.real_node
        if node is None:
            raise RuntimeError("DevStack(node='real') started without its node")
        emit(figures, {"figure": "node_start", "seconds": round(node.started_seconds, 1)})
        imported = node.containerd.import_image(image.archive)
        emit(figures, {"figure": "image_import", "seconds": round(imported, 1), "size_mb": size_mb})
        mock.start()
        mock.wait_ready(lambda: is_listening(mock_port), timeout=30)
        node.expose("mock-model", [mock_port])
        namespace = install_chart(stack, image, mock_port)
        pods, runners = measure_starts(stack, image, namespace, count, in_flight)
        pod_figure = {"figure": "pod_start", "pods": count, "in_flight": in_flight}
        emit(figures, {**pod_figure, **summary(pods)})
        task_figure: dict[str, Any] = {
            "figure": "task_start",
            "tasks": count,
            "in_flight": in_flight,
        }
        task_figure.update(summary(runners))
        task_figure["pod_start_p50_s"] = round(statistics.median(pods), 3)
        task_figure["ratio_p50_to_pod_start"] = round(
            statistics.median(runners) / statistics.median(pods), 2
        )
        emit(figures, task_figure)
    finally:
        mock.stop()
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=5)
    arguments = parser.parse_args()
    reason = prerequisites.missing()
    if reason is not None:
        raise SystemExit(f"bench/realnode.py: {reason}")
    figures: list[dict[str, Any]] = []
    run(arguments.tasks, arguments.in_flight, figures)
    path = write_results(
        "realnode",
        figures,
        f"one run: {arguments.tasks} plain Pods then {arguments.tasks} AgentTasks, "
        f"{arguments.in_flight} in flight, on the real node (node_start from the machine's lock "
        "taken; image_build 0 s when the archive for these sources is cached)",
    )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
