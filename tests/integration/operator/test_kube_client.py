"""The operator's writes against the real apiserver: create, adopt what the task controls,
refuse anything else."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.api.agenttask import GROUP, KIND, PLURAL, VERSION
from opspawn.dev.stack import DevStack
from opspawn.operator.kube import KubeClient, OwnershipConflictError, load_api_client
from opspawn.operator.runner_job import RunnerSettings, build_runner_job, build_task_secret

pytestmark = pytest.mark.anyio

SPEC = {
    "goal": "adopt",
    "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m/v1"},
}
RUNNER = RunnerSettings(image="runner", nats_url="nats://127.0.0.1:1", command=("true",))


def _create_task(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """A real AgentTask to own the objects (the garbage collector removes children of a
    task that does not exist)."""
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name},
            "spec": SPEC,
        },
    )
    return created


async def test_secret_and_job_are_created_then_adopted_and_never_taken_from_another_task(
    stack: DevStack, namespace: str, kube_api: client.ApiClient
) -> None:
    api = await load_api_client(str(stack.kubeconfig))
    kube = KubeClient(api)
    mine = _create_task(kube_api, namespace, "adopt")
    other = _create_task(kube_api, namespace, "other")
    try:
        secret = build_task_secret(mine, "signing-key-0123456789abcdef")
        job = build_runner_job(mine, 1, RUNNER)
        for _ in range(2):  # the second time both exist: a restart adopts them
            await kube.ensure_secret(secret)
            await kube.ensure_job(job)

        # Another task's objects under the same names (as a name collision would make them).
        stolen_secret = build_task_secret(other, "another-key-0123456789abcdef")
        stolen_secret["metadata"]["name"] = secret["metadata"]["name"]
        stolen_job = build_runner_job(other, 1, RUNNER)
        stolen_job["metadata"]["name"] = job["metadata"]["name"]
        with pytest.raises(OwnershipConflictError, match="not controlled by this task"):
            await kube.ensure_secret(stolen_secret)
        with pytest.raises(OwnershipConflictError, match="not controlled by this task"):
            await kube.ensure_job(stolen_job)
    finally:
        await api.close()

    kept = client.CoreV1Api(kube_api).read_namespaced_secret(secret["metadata"]["name"], namespace)
    assert kept.metadata.labels == secret["metadata"]["labels"]
    assert client.BatchV1Api(kube_api).read_namespaced_job(job["metadata"]["name"], namespace)


async def test_a_status_patch_with_a_stale_resource_version_is_refused(
    stack: DevStack, namespace: str, kube_api: client.ApiClient
) -> None:
    created = client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": "rv"},
            "spec": SPEC,
        },
    )
    seen = created["metadata"]["resourceVersion"]
    api = await load_api_client(str(stack.kubeconfig))
    kube = KubeClient(api)
    try:
        patched = await kube.patch_task_status(namespace, "rv", {"steps": 1}, resource_version=seen)
        assert patched is not None
        assert patched["status"]["steps"] == 1
        with pytest.raises(ApiException) as refused:
            await kube.patch_task_status(namespace, "rv", {"steps": 2}, resource_version=seen)
        assert refused.value.status == 409
        unconditional = await kube.patch_task_status(namespace, "rv", {"steps": 3})
    finally:
        await api.close()
    assert unconditional is not None
    assert unconditional["status"]["steps"] == 3


async def test_proxy_variables_of_the_environment_are_not_consulted(
    stack: DevStack, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like kopf's own client: requests go where the kubeconfig says, whatever HTTPS_PROXY says
    (consulting it, and the netrc file, on every request cost the operator 12% of its CPU)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("NO_PROXY", "")
    api = await load_api_client(str(stack.kubeconfig))
    try:
        assert await KubeClient(api).read_job(namespace, "no-such-job") is None
    finally:
        await api.close()
