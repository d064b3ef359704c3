"""One Pod on the process kubelet: its containers as local processes, and its status.

Init containers run one after another, then the app containers together. Each container is a
process group of its own, started from its `command` + `args` (images are not pulled: the
command must exist on this machine), with the resolved environment. The worker writes the Pod
status the way the kubelet does (phase, conditions, container states, exit codes, reasons and
termination messages), applies the restart policy, enforces the Pod's `activeDeadlineSeconds`,
and on deletion stops the processes (SIGTERM, then SIGKILL after the grace period), writes the
final status and removes the Pod.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opspawn.dev.kubelet.environment import ContainerConfigError, container_environment
from opspawn.dev.kubelet.expansion import expand_with
from opspawn.dev.kubelet.node import rfc3339

if TYPE_CHECKING:
    from opspawn.dev.kubelet.kubelet import ProcessKubelet

log = logging.getLogger(__name__)

KubeObject = dict[str, Any]

TERMINATION_MESSAGE_ENV = "OPSPAWN_TERMINATION_MESSAGE_PATH"
"""Where a container's termination message goes: a process cannot own /dev/termination-log,
so the process kubelet gives each container a file of its own and names it in this variable."""

TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
POLL_SECONDS = 0.05
CONFIG_RETRY_SECONDS = 1.0


@dataclass
class ContainerRun:
    """One start of one container."""

    spec: KubeObject
    directory: Path
    restart_count: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    terminated: KubeObject | None = None
    last_terminated: KubeObject | None = None
    retry_at: float = 0.0
    """While the container cannot start (a missing Secret), when to try again."""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def message_path(self) -> Path:
        return self.directory / "termination-log"

    @property
    def log_path(self) -> Path:
        return self.directory / "output.log"

    def status(self) -> KubeObject:
        state: KubeObject
        if self.terminated is not None:
            state = {"terminated": self.terminated}
        elif self.process is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            waiting: KubeObject = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        running = self.process is not None and self.terminated is None
        status: KubeObject = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": state,
        }
        if self.process is not None:
            status["containerID"] = f"process://{self.process.pid}"
        if self.last_terminated is not None:
            status["lastState"] = {"terminated": self.last_terminated}
        return status


@dataclass
class PodWorker:
    """Runs one Pod until it is terminal, and until it is deleted if that comes first."""

    kubelet: ProcessKubelet
    pod: KubeObject
    directory: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    init_runs: list[ContainerRun] = field(default_factory=list)
    app_runs: list[ContainerRun] = field(default_factory=list)
    start_time: str = ""
    started_monotonic: float = 0.0
    deadline_exceeded: bool = False

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run_safely, name=f"pod {self.key}", daemon=True)
        self.thread.start()

    def update(self, pod: KubeObject) -> None:
        """The latest Pod object from the apiserver (deletion is noticed from it)."""
        with self.lock:
            self.pod = pod

    def _deleting(self) -> bool:
        with self.lock:
            return self.pod["metadata"].get("deletionTimestamp") is not None

    def _grace_seconds(self) -> float:
        with self.lock:
            meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            spec_grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(meta_grace if meta_grace is not None else spec_grace)

    # ------------------------------------------------------------------ lifecycle

    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("process kubelet: pod %s failed unexpectedly", self.key)
            self.stop_all(grace=0)
        finally:
            self.finished.set()

    def _run(self) -> None:
        self.start_time = rfc3339()
        self.started_monotonic = time.monotonic()
        spec = self.pod["spec"]
        restart_policy = spec.get("restartPolicy", "Always")
        self.init_runs = [self._new_run(c) for c in spec.get("initContainers") or []]
        self.app_runs = [self._new_run(c) for c in spec.get("containers") or []]
        self.deadline_exceeded = False
        self._write_status("Pending")

        for run in self.init_runs:
            outcome = self._run_to_completion([run], restart_policy, init=True)
            if outcome != "Succeeded":
                self._finish(outcome)
                return
        outcome = self._run_to_completion(self.app_runs, restart_policy, init=False)
        self._finish(outcome)

    def _new_run(self, container: KubeObject) -> ContainerRun:
        directory = self.directory / container["name"]
        directory.mkdir(parents=True, exist_ok=True)
        return ContainerRun(spec=container, directory=directory)

    def _run_to_completion(
        self, runs: list[ContainerRun], restart_policy: str, *, init: bool
    ) -> str:
        """Run `runs` together until all terminate for good; the Pod phase that results."""
        pending = list(runs)
        while True:
            if self._deleting():
                return "Deleted"
            if self._deadline_passed():
                self.deadline_exceeded = True
                self.stop_all(grace=self._grace_seconds())
                return "Failed"
            changed = False
            for run in pending:
                if run.process is None and run.terminated is None:
                    changed |= self._try_start(run)
                elif run.process is not None and run.terminated is None:
                    code = run.process.poll()
                    if code is not None:
                        self._record_exit(run, code)
                        changed = True
                        if self._should_restart(run, restart_policy, init=init):
                            run.last_terminated, run.terminated = run.terminated, None
                            run.process = None
                            run.restart_count += 1
            if changed:
                self._write_status("Pending" if init else "Running")
            if all(run.terminated is not None for run in pending):
                failed = any(run.terminated and run.terminated["exitCode"] != 0 for run in pending)
                return "Failed" if failed else "Succeeded"
            time.sleep(POLL_SECONDS)

    def _should_restart(self, run: ContainerRun, restart_policy: str, *, init: bool) -> bool:
        exit_code = run.terminated["exitCode"] if run.terminated else 0
        if restart_policy == "Always":
            return not init or exit_code != 0
        if restart_policy == "OnFailure":
            return exit_code != 0
        return False

    def _deadline_passed(self) -> bool:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - self.started_monotonic > float(deadline)

    # ------------------------------------------------------------------ processes

    def _try_start(self, run: ContainerRun) -> bool:
        """Start the container's process; False (and a waiting reason) when it cannot start yet."""
        now = time.monotonic()
        if run.retry_at > now:
            return False
        try:
            variables = container_environment(self.pod, run.spec, self.kubelet.fetch(self.pod))
        except ContainerConfigError as error:
            changed = (
                run.waiting_reason != "CreateContainerConfigError"
                or run.waiting_message != str(error)
            )
            run.waiting_reason, run.waiting_message = "CreateContainerConfigError", str(error)
            run.retry_at = now + CONFIG_RETRY_SECONDS
            return changed
        argv = [expand_with(part, variables) for part in run.spec.get("command") or []]
        argv += [expand_with(part, variables) for part in run.spec.get("args") or []]
        if not argv:
            run.waiting_reason = "CreateContainerError"
            run.waiting_message = (
                "the process kubelet pulls no images: the container needs a command"
            )
            run.retry_at = float("inf")
            return True
        environment = {**self.kubelet.inherited_environment(), **variables}
        environment.setdefault("HOSTNAME", self.pod["metadata"]["name"])
        environment[TERMINATION_MESSAGE_ENV] = str(run.message_path)
        run.message_path.write_text("")
        working_dir = run.spec.get("workingDir")
        cwd = working_dir if working_dir and Path(working_dir).is_dir() else run.directory
        try:
            with run.log_path.open("ab") as output:
                run.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    cwd=cwd,
                    start_new_session=True,
                )
        except OSError as error:
            run.waiting_reason = "StartError"
            run.terminated = {
                "exitCode": 128,
                "reason": "StartError",
                "message": f"failed to start {argv[0]!r}: {error.strerror}",
                "startedAt": rfc3339(),
                "finishedAt": rfc3339(),
            }
            return True
        run.started_at = rfc3339()
        log.info(
            "process kubelet: pod %s container %s started as pid %s",
            self.key,
            run.name,
            run.process.pid,
        )
        return True

    def _record_exit(self, run: ContainerRun, returncode: int) -> None:
        exit_code = 128 - returncode if returncode < 0 else returncode
        terminated: KubeObject = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": rfc3339(),
            "containerID": f"process://{run.process.pid if run.process else 0}",
        }
        if returncode < 0:
            terminated["signal"] = -returncode
        message = self._termination_message(run, exit_code)
        if message:
            terminated["message"] = message
        run.terminated = terminated

    def _termination_message(self, run: ContainerRun, exit_code: int) -> str:
        with contextlib.suppress(OSError):
            message = run.message_path.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(
                errors="replace"
            )
            if message:
                return message
        if exit_code != 0 and run.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                lines = run.log_path.read_bytes().splitlines()[-FALLBACK_LOG_LINES:]
                return b"\n".join(lines)[-TERMINATION_MESSAGE_LIMIT:].decode(errors="replace")
        return ""

    def stop_all(self, grace: float) -> None:
        """SIGTERM every running process group, SIGKILL what is left after `grace` seconds."""
        live = [
            (run, run.process)
            for run in self.init_runs + self.app_runs
            if run.process is not None and run.terminated is None
        ]
        for _, process in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(process.poll() is None for _, process in live):
            if time.monotonic() >= deadline:
                for _, process in live:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(POLL_SECONDS)
        for run, process in live:
            code = process.wait()
            # The rest of the group (children the container started) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            self._record_exit(run, code)

    # ------------------------------------------------------------------ status

    def _finish(self, outcome: str) -> None:
        if outcome == "Deleted":
            self.stop_all(grace=self._grace_seconds())
            succeeded = all(
                r.terminated is not None and r.terminated["exitCode"] == 0 for r in self.app_runs
            ) and bool(self.app_runs)
            for run in self.init_runs + self.app_runs:
                if run.terminated is None:
                    run.terminated = {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container was never started before the Pod was deleted",
                        "startedAt": None,
                        "finishedAt": rfc3339(),
                    }
            self._write_status("Succeeded" if succeeded else "Failed")
            self.kubelet.delete_pod(self.pod)
            return
        self._write_status(outcome)
        self.kubelet.pod_finished(self)

    def _write_status(self, phase: str) -> None:
        now = rfc3339()
        running = phase == "Running" and all(
            r.process and r.terminated is None for r in self.app_runs
        )
        initialized = (
            phase != "Pending"
            or not self.init_runs
            or all(r.terminated and r.terminated["exitCode"] == 0 for r in self.init_runs)
        )

        def condition(kind: str, ok: bool, reason: str | None = None) -> KubeObject:
            out: KubeObject = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastTransitionTime": now,
            }
            if reason and not ok:
                out["reason"] = reason
            return out

        terminal_reason = (
            "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        )
        status: KubeObject = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", bool(initialized), "ContainersNotInitialized"),
                condition("ContainersReady", running, terminal_reason),
                condition("Ready", running, terminal_reason),
            ],
            "containerStatuses": [run.status() for run in self.app_runs],
        }
        if self.init_runs:
            status["initContainerStatuses"] = [run.status() for run in self.init_runs]
        if self.deadline_exceeded:
            status["reason"] = "DeadlineExceeded"
            deadline = self.pod["spec"].get("activeDeadlineSeconds")
            status["message"] = (
                f"Pod was active on the node longer than the specified deadline ({deadline}s)"
            )
        self.kubelet.write_pod_status(self.pod, status)
