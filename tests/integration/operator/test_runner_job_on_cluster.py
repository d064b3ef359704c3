"""The runner Job, as the operator builds it, on the real apiserver and process kubelet."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from kubernetes import client

from opspawn.dev.stack import DevStack
from opspawn.operator.runner_job import RunnerSettings, build_runner_job, build_task_secret
from tests.helpers import wait_for

API_KEY = "sk-test-not-a-real-key-0123456789"
GOAL = "Print $(OPSPAWN_MODEL_API_KEY) and $$(HOME) exactly as written"

# Stands in for `opspawn runner`: reports what it received in its termination message.
PROBE = (
    "import hashlib, json, os, pathlib; "
    "spec = json.loads(os.environ['OPSPAWN_TASK_SPEC']); "
    "pathlib.Path(os.environ['OPSPAWN_TERMINATION_MESSAGE_PATH']).write_text(json.dumps({"
    "'goal': spec['goal'], 'extra': os.environ['EXTRA'], "
    "'key_sha256': hashlib.sha256(os.environ['OPSPAWN_MODEL_API_KEY'].encode()).hexdigest(), "
    "'attempt': os.environ['OPSPAWN_ATTEMPT'], 'pod': os.environ['OPSPAWN_POD_NAME']}))"
)


def _task(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "goal": GOAL,
            "model": {
                "provider": "openai",
                "name": "gpt-4.1-mini",
                "apiKeySecretRef": {"name": "openai", "key": "api-key"},
            },
            "runner": {"env": [{"name": "EXTRA", "value": "$(OPSPAWN_MODEL_API_KEY)"}]},
        },
    }


def test_runner_job_is_admitted_under_restricted_and_gets_its_input_literally(
    kube_api: client.ApiClient, namespace: str, stack: DevStack
) -> None:
    core, batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "openai"}, "stringData": {"api-key": API_KEY}}
    )
    task = custom.create_namespaced_custom_object(
        "opspawn.io", "v1alpha1", namespace, "agenttasks", _task(namespace)
    )
    settings = RunnerSettings(
        image="opspawn:test",
        nats_url=stack.nats.url if stack.nats else "",
        command=(sys.executable, "-c", PROBE),
    )

    core.create_namespaced_secret(
        namespace, build_task_secret(task, "signing-key-for-tests-0123456789")
    )
    job = build_runner_job(task, 1, settings)
    batch.create_namespaced_job(namespace, job)
    name = job["metadata"]["name"]

    def report() -> dict[str, Any] | None:
        for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items:
            for status in pod.status.container_statuses or []:
                if status.state.terminated is not None:
                    assert status.state.terminated.exit_code == 0, status.state.terminated
                    parsed: dict[str, Any] = json.loads(status.state.terminated.message)
                    return parsed
        return None

    seen = wait_for(report, 60, "the runner probe to finish")
    assert seen is not None
    assert seen["goal"] == GOAL
    assert seen["extra"] == "$(OPSPAWN_MODEL_API_KEY)"
    assert seen["key_sha256"] == hashlib.sha256(API_KEY.encode()).hexdigest()
    assert seen["attempt"] == "1" and seen["pod"].startswith(name)
    job_object = batch.read_namespaced_job(name, namespace)
    job_text = json.dumps(client.ApiClient().sanitize_for_serialization(job_object))
    assert API_KEY not in job_text, "the API key must reach the runner only through secretKeyRef"

    # Deleting the task takes its Job, Secret and Pods with it (ownerReferences, real GC).
    custom.delete_namespaced_custom_object(
        "opspawn.io", "v1alpha1", namespace, "agenttasks", "probe"
    )
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, 60, "the Job to be collected")
    wait_for(
        lambda: (
            not core.list_namespaced_secret(
                namespace, label_selector="opspawn.io/task-name=probe"
            ).items
        ),
        60,
        "the task Secret to be collected",
    )
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, 60, "the Pods to be collected")
