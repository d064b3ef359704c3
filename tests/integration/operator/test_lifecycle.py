"""The AgentTask lifecycle on the real stack: apiserver with RBAC, Job controller, process
kubelet, and `opspawn operator` as a process of its own under its RBAC identity."""

from __future__ import annotations

import urllib.request
from functools import partial

from kubernetes import client

from tests.conftest import Kubectl
from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask


def test_task_runs_to_succeeded_and_kubectl_wait_sees_it(
    start_test_operator: StartOperator, tasks: Tasks, kubectl: Kubectl, namespace: str
) -> None:
    operator = start_test_operator()
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

    base = operator.metrics_url.removesuffix("/metrics")
    for probe in ("/healthz", "/readyz"):
        with urllib.request.urlopen(base + probe, timeout=5) as response:
            assert response.status == 200
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    assert f'opspawn_attempts_launched_total{{namespace="{namespace}"}} 1.0' in metrics
    assert 'opspawn_tasks_finished_total{phase="Succeeded",reason="Completed"} 1.0' in metrics
    assert "opspawn_tasks_running 0.0" in metrics


def test_transient_failures_are_retried_then_backoff_limit_exceeded(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(agenttask("flaky", inputs={"FAKE_EXIT": "75"}))

    finished = wait_for(lambda: tasks.finished("flaky"), 60, "the task to finish")

    assert finished["status"] == "False"
    assert finished["reason"] == "BackoffLimitExceeded"
    assert "retry limit 2 reached" in finished["message"]
    status = tasks.status("flaky")
    assert status["phase"] == "Failed"
    assert status["attempt"] == 3 and status["retries"] == 2
    assert [a["reason"] for a in status["attempts"]] == ["FakeFailure"] * 3
    assert [a["exitCode"] for a in status["attempts"]] == [75] * 3
    assert len(tasks.jobs("flaky")) == 3  # one Job per attempt


def test_a_retried_attempt_can_succeed(start_test_operator: StartOperator, tasks: Tasks) -> None:
    start_test_operator()
    tasks.create(agenttask("once", inputs={"FAKE_EXIT": "143", "FAKE_ONCE": "yes"}))

    finished = wait_for(lambda: tasks.finished("once"), 60, "the task to finish")

    assert finished["reason"] == "Completed"
    status = tasks.status("once")
    assert status["attempt"] == 2 and status["retries"] == 1
    assert '"attempt": 2' in status["result"]["preview"]


def test_a_failure_the_runner_calls_final_is_not_retried(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(agenttask("gives-up", inputs={"FAKE_EXIT": "1"}))

    finished = wait_for(lambda: tasks.finished("gives-up"), 60, "the task to finish")

    assert (finished["status"], finished["reason"]) == ("False", "FakeFailure")
    assert "exit 1 as asked" in finished["message"]
    assert tasks.status("gives-up")["attempt"] == 1


def test_timeout_ends_as_timed_out(start_test_operator: StartOperator, tasks: Tasks) -> None:
    start_test_operator()
    tasks.create(agenttask("slow", inputs={"FAKE_SLEEP": "300"}, limits={"timeoutSeconds": 10}))

    finished = wait_for(lambda: tasks.finished("slow"), 60, "the task to time out")

    assert (finished["status"], finished["reason"]) == ("False", "TimedOut")
    status = tasks.status("slow")
    assert status["phase"] == "TimedOut" and status["attempt"] == 1
    wait_for(lambda: not tasks.running_pods(), 30, "the runner Pod to be gone")


def test_cancel_while_running_and_while_queued_leaves_no_pod(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator("--max-running", "1")
    tasks.create(agenttask("running", inputs={"FAKE_SLEEP": "300"}))
    wait_for(lambda: tasks.status("running").get("phase") == "Running", 30, "running")
    tasks.create(agenttask("queued", inputs={"FAKE_SLEEP": "300"}))
    wait_for(lambda: tasks.status("queued").get("phase") == "Queued", 30, "queued")
    assert tasks.status("queued")["queuePosition"] == 0

    tasks.patch_spec("queued", {"cancel": True})
    tasks.patch_spec("running", {"cancel": True})

    for name in ("queued", "running"):
        finished = wait_for(partial(tasks.finished, name), 30, f"{name} cancelled")
        assert (finished["status"], finished["reason"]) == ("False", "Cancelled")
        assert tasks.status(name)["phase"] == "Cancelled"
    assert tasks.jobs("queued") == []
    wait_for(lambda: not tasks.jobs("running"), 30, "the cancelled Job to be deleted")
    wait_for(lambda: not tasks.pods(), 30, "every runner Pod to be gone")


def test_suspend_stops_the_attempt_and_resume_starts_a_new_one(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(agenttask("pausable", inputs={"FAKE_SLEEP": "4"}))
    wait_for(lambda: tasks.status("pausable").get("phase") == "Running", 30, "running")

    tasks.patch_spec("pausable", {"suspend": True})
    wait_for(
        lambda: (tasks.condition("pausable", "Running") or {}).get("reason") == "Suspended",
        30,
        "suspended",
    )
    wait_for(lambda: not tasks.running_pods(), 30, "the runner Pod to stop")
    status = tasks.status("pausable")
    assert status["phase"] == "Pending"
    assert status["attempts"][0]["reason"] == "Suspended"

    tasks.patch_spec("pausable", {"suspend": False})
    finished = wait_for(lambda: tasks.finished("pausable"), 60, "the resumed task to finish")

    assert finished["reason"] == "Completed"
    status = tasks.status("pausable")
    assert status["attempt"] == 2 and status["retries"] == 0


def test_a_task_created_suspended_does_not_start_until_resumed(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(agenttask("later", suspend=True))
    wait_for(lambda: tasks.condition("later", "Queued"), 30, "the task to be seen")
    assert tasks.status("later")["phase"] == "Pending"
    assert tasks.jobs("later") == []

    tasks.patch_spec("later", {"suspend": False})

    assert wait_for(lambda: tasks.finished("later"), 60, "finish")["reason"] == "Completed"
    assert tasks.status("later")["attempt"] == 1


def test_ttl_after_finished_deletes_the_task_and_its_children(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(agenttask("short-lived", ttlSecondsAfterFinished=2))
    wait_for(lambda: tasks.jobs("short-lived"), 30, "the Job")

    def gone() -> bool:
        try:
            tasks.get("short-lived")
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(gone, 60, "the task to be deleted after its TTL")
    wait_for(lambda: not tasks.jobs("short-lived"), 60, "its Job to be garbage-collected")
    secrets = tasks.core.list_namespaced_secret(
        tasks.namespace, label_selector="opspawn.io/task-name=short-lived"
    ).items
    wait_for(
        lambda: (
            not tasks.core.list_namespaced_secret(
                tasks.namespace, label_selector="opspawn.io/task-name=short-lived"
            ).items
        ),
        60,
        f"its Secret to be garbage-collected (had {len(secrets)})",
    )


def test_missing_api_key_secret_fails_with_secret_not_found_and_no_pod(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(
        agenttask(
            "no-key",
            model={
                "provider": "openai",
                "name": "gpt-4.1-mini",
                "apiKeySecretRef": {"name": "does-not-exist", "key": "api-key"},
            },
        )
    )

    finished = wait_for(lambda: tasks.finished("no-key"), 30, "the task to fail")

    assert (finished["status"], finished["reason"]) == ("False", "SecretNotFound")
    assert "does-not-exist" in finished["message"]
    assert "apiKeySecretRef" in finished["message"]
    accepted = tasks.condition("no-key", "Accepted")
    assert accepted is not None and accepted["reason"] == "SecretNotFound"
    assert tasks.jobs("no-key") == [] and tasks.pods() == []


def test_a_missing_service_account_fails_the_task_with_failed_create_not_timed_out(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    start_test_operator()
    tasks.create(
        agenttask("no-sa", runner={"serviceAccountName": "robot"}, limits={"timeoutSeconds": 600})
    )

    finished = wait_for(lambda: tasks.finished("no-sa"), 60, "the task to fail")

    assert (finished["status"], finished["reason"]) == ("False", "FailedCreate")
    assert 'serviceaccount "robot" not found' in finished["message"]
    accepted = tasks.condition("no-sa", "Accepted")
    assert accepted is not None
    assert (accepted["status"], accepted["reason"]) == ("False", "FailedCreate")
    assert tasks.status("no-sa")["phase"] == "Failed"
    wait_for(lambda: tasks.jobs("no-sa") == [], 30, "its Job to be deleted")
    assert tasks.pods() == []


def test_a_spec_the_job_api_refuses_ends_with_a_reason_never_without_status(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    """Requests above limits: refused at `kubectl apply` naming the field (admission), or at
    worst Accepted=False naming it; never a task left without status by a retried 422."""
    start_test_operator()
    body = agenttask(
        "too-big",
        runner={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
    )
    refusal: client.exceptions.ApiException | None = None
    try:
        tasks.create(body)
    except client.exceptions.ApiException as refused:
        refusal = refused
    if refusal is not None:
        assert refusal.status == 422
        assert "resources" in str(refusal.body)
        return

    finished = wait_for(lambda: tasks.finished("too-big"), 30, "the task to fail")
    assert (finished["status"], finished["reason"]) == ("False", "JobRefused")
    assert "resources" in finished["message"]
    accepted = tasks.condition("too-big", "Accepted")
    assert accepted is not None and accepted["reason"] == "JobRefused"
    assert tasks.status("too-big")["phase"] == "Failed"
    assert tasks.jobs("too-big") == []
