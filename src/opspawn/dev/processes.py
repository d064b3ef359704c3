"""Start, watch and stop the local processes of the dev stack.

Each process runs in a session (process group) of its own, so that stopping it also stops
whatever it started, and writes its output to a log file that is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ReadyCheck = Callable[[], bool]


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
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise ProcessFailedError(f"{self.name} was not started")
        return self.popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv)
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
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
        stop_process_group(self.popen.pid, grace)
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


def stop_process_group(pgid: int, grace: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pgid)
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        _reap(pgid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
