"""Weaviate for long-term memory: `weaviate-server` built from its Go module, run on free ports.

The binary lives in the cache at `~/.cache/opspawn/bin/weaviate-<version>/weaviate-server`
(`$OPSPAWN_CACHE_DIR` moves the root, as for the control plane). A missing one is built with
the machine's Go from the Go module proxy (`go install <package>@<version>`: the module has no
`replace` directives), once per machine, under a lock of its own. weaviate-client v4 refuses
servers older than 1.27; recent versions need Go >= 1.26.

`WeaviateServer` runs one single-node server with its data under a work directory: every port
it opens (HTTP, gRPC, gossip, data, Raft, Raft RPC) is a free one, so parallel test workers
never collide, and Go profiling, telemetry and vectorizer modules are off.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from opspawn.dev.binaries import cache_lock, cache_root, run_go
from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess

WEAVIATE_VERSION = "v1.35.2"
WEAVIATE_PACKAGE = "github.com/weaviate/weaviate/cmd/weaviate-server"
BINARY_NAME = "weaviate-server"
NODE_NAME = "node1"
CLUSTER_PORTS = (
    "CLUSTER_GOSSIP_BIND_PORT",
    "CLUSTER_DATA_BIND_PORT",
    "RAFT_PORT",
    "RAFT_INTERNAL_RPC_PORT",
)
"""The node-to-node ports a single node still opens; each gets a free port of its own."""


def weaviate_binary_path() -> Path:
    """Where the cached `weaviate-server` is (whether or not it exists yet)."""
    return cache_root() / "bin" / f"weaviate-{WEAVIATE_VERSION}" / BINARY_NAME


def _ready(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def weaviate_binary() -> Path:
    """The cached `weaviate-server`, built first when the cache lacks it."""
    binary = weaviate_binary_path()
    if _ready(binary):
        return binary
    with cache_lock(f"weaviate-{WEAVIATE_VERSION}"):
        if not _ready(binary):
            _build(binary)
    return binary


def _build(binary: Path) -> None:
    if shutil.which("go") is None:
        raise FileNotFoundError("no Go toolchain on PATH to build weaviate-server")
    binary.parent.mkdir(parents=True, exist_ok=True)
    log = cache_root() / "build" / f"weaviate-{WEAVIATE_VERSION}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"opspawn: building weaviate-server {WEAVIATE_VERSION} from its Go module "
        f"(first time only, several minutes; log: {log})",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=binary.parent) as staging:
        run_go(
            ["install", "-trimpath", "-ldflags", "-s -w", f"{WEAVIATE_PACKAGE}@{WEAVIATE_VERSION}"],
            Path(staging),
            log,
            # `go install pkg@version` builds outside any module: no -mod flag applies.
            env={"GOBIN": staging, "GOFLAGS": ""},
        )
        (Path(staging) / BINARY_NAME).replace(binary)


@dataclass
class WeaviateServer:
    """A single-node Weaviate with its data under `workdir`, anonymous access, no modules."""

    workdir: Path
    http_port: int = 0
    grpc_port: int = 0
    process: ManagedProcess | None = None
    _cluster_ports: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """The REST endpoint, as OPSPAWN_WEAVIATE_URL takes it."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """The gRPC endpoint (host:port), as OPSPAWN_WEAVIATE_GRPC_ADDRESS takes it."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 60.0) -> None:
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        for name in CLUSTER_PORTS:
            self._cluster_ports.setdefault(name, free_port())
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            name="weaviate",
            argv=[
                str(weaviate_binary()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.http_port),
                "--scheme",
                "http",
            ],
            log_path=self.workdir / "weaviate.log",
            env=self._environment(data),
        )
        self.process.start()
        self.process.wait_ready(self.ready, timeout)

    def _environment(self, data: Path) -> dict[str, str]:
        ports = {name: str(port) for name, port in self._cluster_ports.items()}
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PERSISTENCE_DATA_PATH": str(data),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DEFAULT_VECTORIZER_MODULE": "none",
            "API_BASED_MODULES_DISABLED": "true",
            "CLUSTER_HOSTNAME": NODE_NAME,
            "CLUSTER_BIND_ADDR": "127.0.0.1",
            "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            "RAFT_JOIN": f"{NODE_NAME}:{ports['RAFT_PORT']}",
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "GRPC_PORT": str(self.grpc_port),
            "GO_PROFILING_DISABLE": "true",
            "DISABLE_TELEMETRY": "true",
            "LOG_LEVEL": "warning",
            **ports,
        }

    def ready(self) -> bool:
        """Weaviate says it is ready (`/v1/.well-known/ready`)."""
        url = f"{self.url}/v1/.well-known/ready"
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def main() -> None:
    """`python -m opspawn.dev.weaviate`: provide `weaviate-server` and print its path."""
    print(weaviate_binary())


if __name__ == "__main__":
    main()
