"""What the real node leaves on the host outside its work dir, and how to take it away: mounts,
the kubelet's cgroups (and the container processes in them), the sysctls the kubelet sets, and
its symlinks in /var/log/containers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
"""The kubelet's top cgroup (cgroupfs driver, cgroupsPerQOS) under every controller."""
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""Set by the kubelet at start (protectKernelDefaults: false); restored on stop."""
CONTAINER_LOG_LINKS = Path("/var/log/containers")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape")


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, in mount order."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return found


def unmount_under(path: Path) -> None:
    """Unmount everything at or below `path`, innermost first (lazily when busy)."""
    for point in reversed(mounts_under(path)):
        unmounted = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)


def kubepods_cgroups() -> list[Path]:
    """Every cgroup the kubelet made, deepest first, across v1 controllers and v2."""
    found: list[Path] = []
    for controller in CGROUP_ROOT.iterdir():
        top = controller / KUBEPODS
        if top.is_dir():
            found += sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            found.append(top)
    return found


def cgroup_pids(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for group in cgroups:
        with contextlib.suppress(OSError):
            pids |= {int(pid) for pid in (group / "cgroup.procs").read_text().split()}
    return pids


def kill_pods(timeout: float = 20.0) -> None:
    """SIGKILL every process in the kubelet's cgroups (Pod sandboxes and containers)."""
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(kubepods_cgroups()):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"Pod processes still alive after SIGKILL: {sorted(pids)}")
        time.sleep(0.1)


def remove_kubepods_cgroups() -> None:
    for group in kubepods_cgroups():
        with contextlib.suppress(OSError):
            group.rmdir()


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in KUBELET_SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


def restore_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / name).write_text(value)


def remove_container_log_links(pod_logs: Path) -> None:
    """The kubelet's /var/log/containers symlinks that point into `pod_logs`."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    for link in CONTAINER_LOG_LINKS.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                link.unlink()


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (a work dir path): for checks."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
