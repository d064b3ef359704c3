"""What the real node needs from the machine, and why it cannot run when something is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from opspawn.dev.realnode.containerd import CNI_BIN_DIR

COMMANDS = ("containerd", "ctr", "runc", "buildah", "gcc", "iptables", "ip6tables", "ipset", "ip")
DEBIAN_PACKAGES = (
    "containerd runc buildah mmdebstrap containernetworking-plugins iptables conntrack ipset gcc "
    "libc6-dev"
)


def missing() -> str | None:
    """Why a real node cannot start here (None: it can). `.ci/run` installs the packages."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, cgroups, iptables)"
    absent = [command for command in COMMANDS if shutil.which(command) is None]
    if absent:
        return (
            f"the real node needs {', '.join(absent)} on PATH "
            f"(apt-get install --no-install-recommends {DEBIAN_PACKAGES})"
        )
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN_DIR / plugin).exists():
            return f"the real node needs {CNI_BIN_DIR / plugin} (containernetworking-plugins)"
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        return "the real node needs the memory cgroup controller"
    return None
