"""Start, watch and stop the local processes of the dev stack.

Each process runs in a session (process group) of its own, so that stopping it also stops
whatever it started, and writes its output to a log file that is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

ReadyCheck = Callable[[], bool]


class _UserArguments(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


class ProcessFailedError(RuntimeError):
    """A managed process exited, or did not become ready in time."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One local process of the stack, with its log file and a readiness check."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    shutdown_signal: signal.Signals | None = None
    """Sent to the main process alone to stop it, for servers that stop their own workers
    cleanly; without it the whole group gets SIGTERM. Either way SIGKILL ends what is left."""
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise ProcessFailedError(f"{self.name} was not started")
        return self.popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                **as_user(self.user),
            )

    def wait_ready(self, check: ReadyCheck, timeout: float) -> None:
        """Poll `check` until it holds; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise ProcessFailedError(
                    f"{self.name} exited with code {self.popen.returncode} before it was ready; "
                    f"its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ProcessFailedError(
                    f"{self.name} was not ready after {timeout:.0f}s; its log ({self.log_path}) "
                    f"ends with:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None:
            return
        stop_process_group(self.popen.pid, grace, self.shutdown_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after its last ')'.
        state, _parent, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def as_user(user: str | None) -> _UserArguments:
    """`subprocess` arguments that run a child as `user`, with its primary group and no other
    (as `runuser` would, but without a wrapper process between us and the child)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def stop_process_group(
    pgid: int, grace: float = 10.0, shutdown_signal: signal.Signals | None = None
) -> None:
    """Stop a process group: `shutdown_signal` to its leader alone when given, else SIGTERM
    to the whole group; SIGKILL for whatever is left after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        if shutdown_signal is None:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pgid, shutdown_signal)
    if _group_gone(pgid, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _group_gone(pgid, 5)


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for every member of the group to exit."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pgid)
        if not _group_alive(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
