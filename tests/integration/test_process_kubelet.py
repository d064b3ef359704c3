"""Plain Jobs on the real Job controller, run by the process kubelet."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from opspawn.dev.processes import pid_alive
from tests.helpers import wait_for

PYTHON = sys.executable


def _job(name: str, command: list[str], **pod_spec: Any) -> dict[str, Any]:
    active_deadline = pod_spec.pop("activeDeadlineSeconds", None)
    container = {
        "name": "main",
        "image": "opspawn/runner:dev",
        "command": command,
        **pod_spec.pop("container", {}),
    }
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container], **pod_spec}},
        },
    }
    if active_deadline is not None:
        job["spec"]["activeDeadlineSeconds"] = active_deadline
    return job


def _read(path: Path) -> str:
    """The file's text, or "" while it does not exist yet."""
    return path.read_text() if path.exists() else ""


def _job_condition(batch: client.BatchV1Api, namespace: str, name: str) -> Any:
    job = batch.read_namespaced_job_status(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


def _pods(core: client.CoreV1Api, namespace: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items)


def _terminated(core: client.CoreV1Api, namespace: str, job: str) -> Any:
    for pod in _pods(core, namespace, job):
        for status in pod.status.container_statuses or []:
            if status.state and status.state.terminated:
                return status.state.terminated
    return None


def test_job_that_exits_zero_completes(kube_api: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, _job("ok", [PYTHON, "-c", "print('hello')"]))
    condition = wait_for(lambda: _job_condition(batch, namespace, "ok"), 60, "the Job to finish")
    assert condition.type == "Complete"
    terminated = _terminated(core, namespace, "ok")
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")


def test_job_that_exits_three_fails_with_the_exit_code_in_the_pod(
    kube_api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    script = "import pathlib, os, sys; pathlib.Path(os.environ['OPSPAWN_TERMINATION_MESSAGE_PATH']).write_text('model gave up'); sys.exit(3)"
    batch.create_namespaced_job(namespace, _job("fails", [PYTHON, "-c", script]))
    condition = wait_for(lambda: _job_condition(batch, namespace, "fails"), 60, "the Job to finish")
    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    terminated = _terminated(core, namespace, "fails")
    assert (terminated.exit_code, terminated.reason, terminated.message) == (
        3,
        "Error",
        "model gave up",
    )
    assert _pods(core, namespace, "fails")[0].status.phase == "Failed"


def test_active_deadline_kills_a_sleeping_job(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    pid_file = tmp_path / "pid"
    script = f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(300)"
    batch.create_namespaced_job(
        namespace, _job("sleeps", [PYTHON, "-c", script], activeDeadlineSeconds=3)
    )
    pid = int(wait_for(lambda: _read(pid_file), 30, "the process to start"))
    condition = wait_for(lambda: _job_condition(batch, namespace, "sleeps"), 60, "the deadline")
    assert (condition.type, condition.reason) == ("Failed", "DeadlineExceeded")
    wait_for(lambda: not pid_alive(pid), 30, "the process to be killed")
    wait_for(lambda: not _pods(core, namespace, "sleeps"), 30, "the Pod to be removed")


def test_env_from_secret_and_expansion_reach_the_process(
    kube_api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "keys"},
            "data": {"token": base64.b64encode(b"s3cr3t $(NOT_EXPANDED)").decode()},
        },
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}
    )
    script = (
        "import os, sys, pathlib, json; "
        "keys = ['TOKEN', 'MODE', 'POD', 'GREETING', 'LITERAL']; "
        "pathlib.Path(os.environ['OPSPAWN_TERMINATION_MESSAGE_PATH']).write_text("
        "json.dumps({k: os.environ.get(k) for k in keys} | {'argv': sys.argv[1:]}))"
    )
    container = {
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "GREETING", "value": "hello $(MODE)"},
            {"name": "LITERAL", "value": "$$(MODE) and $(UNDEFINED)"},
        ],
        "args": ["$(GREETING)", "$$(GREETING)"],
    }
    batch.create_namespaced_job(namespace, _job("env", [PYTHON, "-c", script], container=container))
    wait_for(lambda: _job_condition(batch, namespace, "env"), 60, "the Job to finish")
    seen = json.loads(_terminated(core, namespace, "env").message)
    assert seen == {
        "TOKEN": "s3cr3t $(NOT_EXPANDED)",
        "MODE": "fast",
        "POD": namespace,
        "GREETING": "hello fast",
        "LITERAL": "$(MODE) and $(UNDEFINED)",
        "argv": ["hello fast", "$(GREETING)"],
    }


def test_missing_secret_is_a_config_error_until_it_appears(
    kube_api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    container = {
        "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]
    }
    batch.create_namespaced_job(
        namespace, _job("waits", [PYTHON, "-c", "pass"], container=container)
    )

    def config_error() -> Any:
        for pod in _pods(core, namespace, "waits"):
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting is not None and waiting.reason == "CreateContainerConfigError":
                    return waiting
        return None

    waiting = wait_for(config_error, 30, "CreateContainerConfigError")
    assert waiting.message == 'secret "later" not found'
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "later"}, "stringData": {"k": "v"}}
    )
    condition = wait_for(lambda: _job_condition(batch, namespace, "waits"), 60, "the Job to finish")
    assert condition.type == "Complete"


def test_deleting_a_job_kills_its_process_and_removes_its_pods(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    pid_file = tmp_path / "pid"
    # The container starts a child of its own: the whole process group must go.
    script = (
        "import os, subprocess, sys, time, pathlib; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"pathlib.Path({str(pid_file)!r}).write_text(f'{{os.getpid()}} {{child.pid}}'); time.sleep(300)"
    )
    batch.create_namespaced_job(namespace, _job("deleted", [PYTHON, "-c", script]))
    pids = [int(p) for p in wait_for(lambda: _read(pid_file), 30, "the processes").split()]
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)
    batch.delete_namespaced_job("deleted", namespace, propagation_policy="Background")
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 60, "the processes to be killed")
    wait_for(
        lambda: not _pods(core, namespace, "deleted"),
        60,
        "the garbage collector to remove the Pods",
    )


def test_pod_with_unmatched_node_selector_stays_pending(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    pod = {
        "metadata": {"name": "elsewhere"},
        "spec": {
            "nodeSelector": {"gpu": "true"},
            "containers": [{"name": "main", "image": "x", "command": [PYTHON, "-c", "pass"]}],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def unschedulable() -> bool:
        status = core.read_namespaced_pod_status("elsewhere", namespace).status
        return any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for c in status.conditions or []
        )

    wait_for(unschedulable, 30, "the Pod to be reported unschedulable")
    assert core.read_namespaced_pod("elsewhere", namespace).spec.node_name is None
