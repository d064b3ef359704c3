"""containerd for the real node: root and state of its own (sockets in /run/opspawn-realnode), the
CRI plugin configured for this machine kind (runc with cgroupfs, `restrict_oom_score_adj`,
network namespaces under the state dir, the local pause image as `sandbox_image`)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.processes import ManagedProcess

CNI_BIN_DIR = Path("/usr/lib/cni")
"""Debian's containernetworking-plugins."""
NAMESPACE = "k8s.io"
SOCKET_DIR = Path("/run/opspawn-realnode")
"""The node's containerd sockets (one node per machine)."""
"""The containerd namespace of the CRI plugin (the kubelet's containers and images)."""


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))


@dataclass
class Containerd:
    workdir: Path
    sandbox_image: str
    cni_conf_dir: Path
    root_dir: Path
    """Images and snapshots; may outlive the work dir, so that imports are kept."""
    socket_dir: Path = SOCKET_DIR
    """Short on purpose: a unix socket path has at most 104 characters, a work dir may be longer."""
    process: ManagedProcess | None = None

    @property
    def socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    def config(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f"root = {_toml_string(self.root_dir)}",
                f"state = {_toml_string(self.state)}",
                "[grpc]",
                f"  address = {_toml_string(self.socket)}",
                "[ttrpc]",
                f"  address = {_toml_string(self.socket_dir / 'containerd.ttrpc.sock')}",
                "[metrics]",
                '  address = ""',
                f"{cri}]",
                f"  sandbox_image = {_toml_string(self.sandbox_image)}",
                "  restrict_oom_score_adj = true",
                "  netns_mounts_under_state_dir = true",
                "  enable_selinux = false",
                f"{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"{cri}.containerd.runtimes.runc.options]",
                "  SystemdCgroup = false",
                f"{cri}.cni]",
                f"  bin_dir = {_toml_string(CNI_BIN_DIR)}",
                f"  conf_dir = {_toml_string(self.cni_conf_dir)}",
                '[plugins."io.containerd.internal.v1.opt"]',
                f"  path = {_toml_string(self.workdir / 'opt')}",
                "",
            ]
        )

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.toml"
        config.write_text(self.config())
        self.process = ManagedProcess(
            name="containerd",
            argv=["containerd", "--config", str(config)],
            log_path=self.workdir / "containerd.log",
        )
        self.process.start()
        self.process.wait_ready(self._cri_ready, timeout)

    def _cri_ready(self) -> bool:
        """The CRI plugin serves (the kubelet refuses a runtime whose CRI says "server is not
        initialized yet"): its last start-up step is logged after containerd has booted."""
        if (
            self.process is None
            or "Start streaming server" not in self.process.log_path.read_text()
        ):
            return False
        return self.ctr("version").returncode == 0

    def ctr(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`ctr` against this containerd, in the CRI plugin's namespace."""
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def images(self) -> set[str]:
        listed = self.ctr("images", "list", "--quiet")
        return set(listed.stdout.split())

    def import_image(self, archive: Path) -> float:
        """`ctr images import` of a docker-archive (names kept as they are); the seconds taken."""
        started = time.monotonic()
        imported = self.ctr(
            "images",
            "import",
            "--snapshotter",
            "overlayfs",
            str(archive),
            timeout=900,
        )
        if imported.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed: {imported.stderr.strip()}")
        return time.monotonic() - started

    def shim_pids(self) -> list[int]:
        """The runc shims this containerd started (they outlive it, in sessions of their own)."""
        marker = str(self.socket).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
