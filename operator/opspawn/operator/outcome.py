"""How a finished attempt ended, read from its Job and the runner Pod's final state.

The runner documents its exit codes (`RunnerExitCode`) and leaves a termination message with
its stop reason and the beginning of the result; the Job says whether its deadline ran out.
Everything the operator decides about an ended attempt (done, failed, retry) starts here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opspawn.api.agenttask import ResultSummary
from opspawn.api.events import RunnerExitCode, exit_code_is_retryable
from opspawn.operator.views import JobView

COMPLETED = "Completed"
TIMED_OUT = "TimedOut"
RUNNER_LOST = "RunnerLost"
FAILED = "Failed"
OOM_KILLED = "OOMKilled"
"""The kubelet's termination reason for a container the kernel killed at its memory limit."""

_REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


@dataclass(frozen=True)
class AttemptOutcome:
    """The end of one attempt."""

    reason: str
    """CamelCase: Completed, TimedOut, RunnerLost, or the runner's stop reason."""
    message: str = ""
    exit_code: int | None = None
    retryable: bool = False
    result: ResultSummary | None = None
    spec_problem: bool = False
    """The runner could not start as the spec says (its Pod cannot be made, its image not
    pulled): the task is not accepted, and another attempt would fail the same way."""

    @property
    def succeeded(self) -> bool:
        return self.reason == COMPLETED

    @property
    def timed_out(self) -> bool:
        return self.reason == TIMED_OUT


def runner_lost(message: str) -> AttemptOutcome:
    return AttemptOutcome(reason=RUNNER_LOST, message=message, retryable=True)


FAILED_CREATE = "FailedCreate"

IMAGE_PULL_FAILURES = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons of a container whose image will not come: the kubelet has failed to pull
it at least once and backs off (ImagePullBackOff; the first failure, ErrImagePull, still gets
its retry), or it cannot even try (an invalid name, a pull policy of Never)."""

CONFIG_FAILURES = frozenset({"CreateContainerConfigError"})
"""The container cannot be configured as specified (a Secret or key it references is gone)."""


def pod_creation_failed(message: str) -> AttemptOutcome:
    """The Job controller cannot create the runner Pod (its FailedCreate Event says why:
    a ServiceAccount that does not exist, a quota, a policy)."""
    return AttemptOutcome(
        reason=FAILED_CREATE,
        message=f"the runner Pod cannot be created: {message}"[:1024],
        spec_problem=True,
    )


def start_failure(pods: Iterable[Mapping[str, Any]]) -> AttemptOutcome | None:
    """Why the runner container cannot start, from its Pod's status (None while it may).

    Read only from Pod status fields (containerStatuses[].state.waiting), so it is the same on
    any kubelet that reports them."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in (
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in IMAGE_PULL_FAILURES or reason in CONFIG_FAILURES:
                image = container.get("image") or "the image"
                detail = str(waiting.get("message") or "")
                what = f"cannot pull {image}" if reason in IMAGE_PULL_FAILURES else "cannot start"
                message = f"the runner container {what}: {detail}".rstrip(": ")
                return AttemptOutcome(reason=reason, message=message[:1024], spec_problem=True)
    return None


def attempt_outcome(job: JobView, pods: Iterable[Mapping[str, Any]]) -> AttemptOutcome:
    """The outcome of a finished `job`, given the Pods it left behind (possibly none)."""
    if job.failed and job.failure_reason == "DeadlineExceeded":
        return AttemptOutcome(
            reason=TIMED_OUT,
            message=f"the runner Job ran past its deadline: {job.failure_message}".strip(": "),
        )
    terminated = _last_termination(pods)
    if terminated is None:
        if job.complete:
            return AttemptOutcome(reason=COMPLETED, exit_code=0)
        evicted = _evicted(pods)
        if evicted is not None:
            return runner_lost(f"the runner Pod was evicted: {evicted}")
        return runner_lost(
            "the runner Pod ended without reporting an exit code"
            f" ({job.failure_reason or 'no reason'}: {job.failure_message or 'no message'})"
        )
    exit_code = int(terminated.get("exitCode", -1))
    if terminated.get("reason") == OOM_KILLED:
        return AttemptOutcome(
            reason=OOM_KILLED,
            message=f"the runner went over its memory limit and was killed (exit code "
            f"{exit_code}): raise spec.runner.resources.limits.memory",
            exit_code=exit_code,
            retryable=exit_code_is_retryable(exit_code),
        )
    message = _termination_message(terminated)
    stop_reason, details = _stop_reason(message)
    if exit_code == RunnerExitCode.SUCCEEDED:
        return AttemptOutcome(reason=COMPLETED, exit_code=0, result=_result(message))
    if exit_code == RunnerExitCode.TIMED_OUT:
        reason = TIMED_OUT
    elif stop_reason is not None:
        reason = stop_reason
    else:
        reason = _exit_code_reason(exit_code)
    return AttemptOutcome(
        reason=reason,
        message=details or f"the runner exited with code {exit_code}",
        exit_code=exit_code,
        retryable=exit_code_is_retryable(exit_code),
        result=_result(message),
    )


def _exit_code_reason(exit_code: int) -> str:
    try:
        return RunnerExitCode(exit_code).reason
    except ValueError:
        return FAILED


def _last_termination(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The runner container's terminated state in the most recently created Pod."""
    newest: tuple[str, Mapping[str, Any]] | None = None
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is None:
                continue
            created = str((pod.get("metadata") or {}).get("creationTimestamp", ""))
            if newest is None or created >= newest[0]:
                newest = (created, terminated)
    return None if newest is None else newest[1]


def _evicted(pods: Iterable[Mapping[str, Any]]) -> str | None:
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("reason") == "Evicted":
            return str(status.get("message") or "Evicted")
    return None


def _termination_message(terminated: Mapping[str, Any]) -> Mapping[str, Any]:
    """The runner's termination message (JSON), or a message-only stand-in for any other text."""
    text = str(terminated.get("message") or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"message": text[-1024:]}
    return parsed if isinstance(parsed, dict) else {"message": text[-1024:]}


def _stop_reason(message: Mapping[str, Any]) -> tuple[str | None, str]:
    """(stop reason, details) from the runner's `<StopReason>: <details>` message."""
    text = str(message.get("message") or "")
    head, separator, tail = text.partition(": ")
    if separator and _REASON.match(head):
        return head, tail
    return None, text


def _result(message: Mapping[str, Any]) -> ResultSummary | None:
    if "resultSizeBytes" not in message:
        return None
    try:
        return ResultSummary(
            preview=str(message.get("result") or ""),
            truncated=bool(message.get("resultTruncated")),
            size_bytes=int(message.get("resultSizeBytes") or 0),
            sha256=message.get("resultSha256"),
        )
    except ValueError:
        return None
