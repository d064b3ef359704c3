"""The `kind` target of the e2e suite: a kind cluster (through pytest-kind) running the image
built from the repository's Dockerfile.

The chart is installed as it is in production: the operator is the Deployment's container and
runner Jobs use the same image. NATS, Postgres and the mock model run on the host, as in the local
stack (bound to 127.0.0.1); a `Relay` per service listens on the gateway address of kind's Docker
network (the host, as kind's node and Pods reach it) and forwards to it. Postgres sees relayed
connections as local ones, so its trust authentication needs no change.

Linux only: on Docker Desktop the network's gateway is not an address of the host.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IMAGE_REPOSITORY = "opspawn"
IMAGE_TAG = "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
NETWORK = "kind"
"""The Docker network kind puts its nodes on."""
REPOSITORY = Path(__file__).resolve().parents[2]


def kind_binary(option: str | None) -> str | None:
    """pytest-kind's `--kind-bin`, else `kind` on PATH (pytest-kind would download one)."""
    return option or shutil.which("kind")


def unavailable(kind_bin: str | None) -> str | None:
    """Why the kind target cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "kind target: no docker CLI on PATH"
    info = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"kind target: `docker info` failed ({lines[-1] if lines else info.returncode})"
    if importlib.util.find_spec("pytest_kind") is None:
        return "kind target: pytest-kind is not installed (the `test` extra)"
    if kind_bin is None:
        return "kind target: no `kind` binary on PATH (or pytest-kind's --kind-bin)"
    return None


def build_image() -> None:
    """`docker build` of the repository's Dockerfile as IMAGE."""
    built = subprocess.run(
        ["docker", "build", "--tag", IMAGE, str(REPOSITORY)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{built.stderr[-4000:]}")


def ipv4_gateway(ipam_configs: list[dict[str, Any]]) -> str:
    """The IPv4 gateway among a Docker network's IPAM configs (the subnet's first address when
    Docker leaves the gateway out)."""
    for entry in ipam_configs:
        subnet = ipaddress.ip_network(entry["Subnet"])
        if subnet.version == 4:
            return str(entry.get("Gateway") or subnet[1])
    raise RuntimeError(f"no IPv4 subnet in the {NETWORK} network: {ipam_configs}")


def network_gateway() -> str:
    """The host's address on kind's Docker network."""
    inspected = subprocess.run(
        ["docker", "network", "inspect", NETWORK, "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    configs: list[dict[str, Any]] = json.loads(inspected.stdout)
    return ipv4_gateway(configs)


@contextlib.contextmanager
def kind_cluster(
    name: str, workdir: Path, kind_bin: str, node_image: str | None, kubectl: Path
) -> Iterator[Path]:
    """A new kind cluster with IMAGE loaded; its kubeconfig. Deleted afterwards."""
    from pytest_kind import KindCluster  # type: ignore[import-untyped]

    kubeconfig = workdir / "kubeconfig"
    # KindCluster keeps its files under ./.pytest-kind: under workdir, not in the checkout.
    with contextlib.chdir(workdir):
        cluster = KindCluster(
            name,
            kubeconfig=kubeconfig,
            image=node_image,
            kind_path=Path(kind_bin),
            kubectl_path=kubectl,
        )
    cluster.create()
    try:
        cluster.load_docker_image(IMAGE)
        yield kubeconfig
    finally:
        cluster.delete()


class Relay:
    """Accepts TCP connections on `host` (a free port) and pipes each one to 127.0.0.1:`port`."""

    def __init__(self, host: str, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._server = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                accepted, _ = self._server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                accepted.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=_connect, args=(accepted, upstream), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._server.close()


def _connect(accepted: socket.socket, upstream: socket.socket) -> None:
    with accepted, upstream:
        back = threading.Thread(target=_pipe, args=(upstream, accepted), daemon=True)
        back.start()
        _pipe(accepted, upstream)
        back.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until `source` ends, then end that direction on `sink`."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
