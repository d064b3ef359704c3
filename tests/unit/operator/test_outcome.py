"""How an ended attempt is read from its Job and the runner Pod's final state."""

from __future__ import annotations

from typing import Any

import pytest

from opspawn.api.events import RunnerExitCode
from opspawn.operator.outcome import attempt_outcome, start_failure
from tests.unit.operator.builders import job, pod, termination_message

FAILED_JOB = job(
    active=0, failed=("BackoffLimitExceeded", "Job has reached the specified backoff limit")
)


def test_a_job_past_its_deadline_timed_out_and_is_not_retried() -> None:
    deadline = job(
        active=0,
        failed=("DeadlineExceeded", "Job was active longer than specified deadline"),
    )

    outcome = attempt_outcome(deadline, [pod(143, terminated_reason="Error")])

    assert outcome.reason == "TimedOut"
    assert outcome.timed_out
    assert not outcome.retryable
    assert "deadline" in outcome.message
    assert "Job was active longer than specified deadline" in outcome.message


def test_transient_exit_is_retryable_and_carries_the_runners_stop_reason() -> None:
    message = termination_message(
        RunnerExitCode.TRANSIENT, "ModelUnavailable: the provider kept failing (503)"
    )

    outcome = attempt_outcome(FAILED_JOB, [pod(75, message)])

    assert outcome.reason == "ModelUnavailable"
    assert outcome.message == "the provider kept failing (503)"
    assert outcome.exit_code == 75
    assert outcome.retryable
    assert not outcome.succeeded


def test_a_runner_killed_at_its_memory_limit_is_oom_killed_and_retryable() -> None:
    outcome = attempt_outcome(FAILED_JOB, [pod(137, terminated_reason="OOMKilled")])

    assert outcome.reason == "OOMKilled"
    assert "memory limit" in outcome.message
    assert outcome.exit_code == 137
    assert outcome.retryable


def test_exit_zero_completed_with_the_result_summary() -> None:
    message = termination_message(RunnerExitCode.SUCCEEDED, "Completed", result="Three changes.")

    outcome = attempt_outcome(job(active=0, complete=True), [pod(0, message)])

    assert outcome.succeeded
    assert outcome.reason == "Completed"
    assert outcome.exit_code == 0
    assert outcome.result is not None
    assert outcome.result.preview == "Three changes."
    assert outcome.result.size_bytes == len(b"Three changes.")
    assert outcome.result.sha256 is not None
    assert not outcome.result.truncated


def test_a_job_without_pods_lost_its_runner_and_is_retried() -> None:
    outcome = attempt_outcome(FAILED_JOB, [])

    assert outcome.reason == "RunnerLost"
    assert outcome.retryable
    assert outcome.exit_code is None
    assert "BackoffLimitExceeded" in outcome.message


def test_a_complete_job_whose_pods_are_gone_still_completed() -> None:
    outcome = attempt_outcome(job(active=0, complete=True), [])

    assert outcome.succeeded
    assert outcome.exit_code == 0
    assert outcome.result is None


def test_an_evicted_pod_that_reported_no_exit_code_lost_its_runner() -> None:
    evicted = pod(
        None,
        pod_reason="Evicted",
        pod_message="The node was low on resource: memory.",
    )

    outcome = attempt_outcome(FAILED_JOB, [evicted])

    assert outcome.reason == "RunnerLost"
    assert outcome.retryable
    assert "evicted" in outcome.message
    assert "The node was low on resource: memory." in outcome.message


def test_an_evicted_pod_with_a_killed_container_is_retried_by_its_exit_code() -> None:
    # The kubelet usually reports the killed container's state too; the exit code decides then
    # (the reason is Killed, not RunnerLost), and the attempt is still retried.
    evicted = pod(
        137,
        "The container could not be located when the pod was terminated",
        terminated_reason="ContainerStatusUnknown",
        pod_reason="Evicted",
        pod_message="The node was low on resource: memory.",
    )

    outcome = attempt_outcome(FAILED_JOB, [evicted])

    assert outcome.retryable
    assert outcome.reason == "Killed"
    assert outcome.exit_code == 137


def test_an_unknown_exit_code_failed_and_is_not_retried() -> None:
    outcome = attempt_outcome(FAILED_JOB, [pod(42, "segfault in a native extension")])

    assert outcome.reason == "Failed"
    assert not outcome.retryable
    assert outcome.exit_code == 42
    assert outcome.message == "segfault in a native extension"


def test_a_model_that_gave_up_is_final_with_its_stop_reason() -> None:
    message = termination_message(
        RunnerExitCode.FAILED, "Stalled: the same tool call 3 times in a row"
    )

    outcome = attempt_outcome(FAILED_JOB, [pod(1, message)])

    assert outcome.reason == "Stalled"
    assert outcome.message == "the same tool call 3 times in a row"
    assert not outcome.retryable


def test_budget_exhausted_keeps_the_partial_result() -> None:
    message = termination_message(
        RunnerExitCode.BUDGET_EXHAUSTED, "MaxStepsReached: 20 steps", result="Partial answer"
    )

    outcome = attempt_outcome(FAILED_JOB, [pod(3, message)])

    assert outcome.reason == "MaxStepsReached"
    assert not outcome.retryable
    assert outcome.result is not None
    assert outcome.result.preview == "Partial answer"


def test_runner_timeout_exit_code_is_timed_out_whatever_the_message() -> None:
    message = termination_message(RunnerExitCode.TIMED_OUT, "TimedOut: limits.timeoutSeconds (60)")

    outcome = attempt_outcome(FAILED_JOB, [pod(4, message)])

    assert outcome.timed_out
    assert outcome.reason == "TimedOut"
    assert outcome.message == "limits.timeoutSeconds (60)"
    assert not outcome.retryable


def test_a_kill_without_a_message_is_retried_as_killed() -> None:
    outcome = attempt_outcome(FAILED_JOB, [pod(137, terminated_reason="Error")])

    assert outcome.reason == "Killed"
    assert outcome.retryable
    assert outcome.message == "the runner exited with code 137"


def test_a_plain_text_termination_message_is_kept_as_details() -> None:
    # terminationMessagePolicy FallbackToLogsOnError: the end of the log, not JSON.
    outcome = attempt_outcome(FAILED_JOB, [pod(70, "Traceback (most recent call last) ...")])

    assert outcome.reason == "InternalError"
    assert outcome.message == "Traceback (most recent call last) ..."
    assert outcome.result is None
    assert not outcome.retryable


def test_the_newest_pod_decides() -> None:
    older = pod(137, created="2026-01-01T12:00:01Z")
    newer = pod(
        1,
        termination_message(RunnerExitCode.FAILED, "ModelRefused: content policy"),
        created="2026-01-01T12:05:00Z",
    )

    for pods in ([older, newer], [newer, older]):
        outcome = attempt_outcome(FAILED_JOB, pods)
        assert outcome.reason == "ModelRefused"
        assert not outcome.retryable


def _waiting(reason: str, message: str = "") -> dict[str, Any]:
    runner = pod(None)
    runner["status"]["phase"] = "Pending"
    runner["status"]["containerStatuses"] = [
        {
            "name": "runner",
            "image": "registry.invalid/nope:1",
            "ready": False,
            "state": {"waiting": {"reason": reason, "message": message}},
        }
    ]
    return runner


@pytest.mark.parametrize(
    "reason",
    ["ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"],
)
def test_a_runner_that_cannot_start_is_a_spec_problem_named_by_the_kubelets_reason(
    reason: str,
) -> None:
    outcome = start_failure([_waiting(reason, "Back-off pulling image")])

    assert outcome is not None
    assert outcome.reason == reason
    assert outcome.spec_problem
    assert not outcome.retryable
    assert "Back-off pulling image" in outcome.message


@pytest.mark.parametrize("reason", ["ContainerCreating", "ErrImagePull", "PodInitializing"])
def test_a_runner_still_starting_or_on_its_first_pull_failure_is_given_time(reason: str) -> None:
    assert start_failure([_waiting(reason)]) is None
    assert start_failure([]) is None
