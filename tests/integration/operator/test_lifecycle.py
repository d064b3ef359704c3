"""The AgentTask lifecycle on the real stack: apiserver with RBAC, Job controller, process
kubelet, and `opspawn operator` as a process of its own under its RBAC identity."""

from __future__ import annotations

from tests.conftest import Kubectl
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask


def test_task_runs_to_succeeded_and_kubectl_wait_sees_it(
    start_test_operator: StartOperator, tasks: Tasks, kubectl: Kubectl, namespace: str
) -> None:
    start_test_operator()
    tasks.create(agenttask("hello"))

    waited = kubectl(
        "wait", "--for=condition=Succeeded", "agenttask/hello", "--timeout=60s", namespace=namespace
    )
    assert waited.returncode == 0, waited.stderr

    status = tasks.status("hello")
    assert status["phase"] == "Succeeded"
    assert status["attempt"] == 1
    assert status["jobName"] == status["attempts"][0]["jobName"]
    assert status["attempts"][0]["reason"] == "Completed"
    assert status["attempts"][0]["exitCode"] == 0
    assert status["startTime"] and status["completionTime"]
    assert status["observedGeneration"] == tasks.get("hello")["metadata"]["generation"]
    assert '"goal": "goal of hello"' in status["result"]["preview"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    assert conditions["Succeeded"]["reason"] == "Completed"
    assert conditions["Running"]["status"] == "False"
    assert [job.metadata.name for job in tasks.jobs("hello")] == [status["jobName"]]

    described = kubectl("describe", "agenttask", "hello", namespace=namespace)
    assert "Launched" in described.stdout and "Completed" in described.stdout
    listed = kubectl("get", "agenttasks", namespace=namespace)
    assert "Succeeded" in listed.stdout
