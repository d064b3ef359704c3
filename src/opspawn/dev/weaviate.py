"""Weaviate for long-term memory: `weaviate-server` (built from its Go module and cached by
`opspawn.dev.tools`) run on free ports.

`WeaviateServer` runs one single-node server with its data under a work directory: every port
it opens (HTTP, gRPC, gossip, data, Raft, Raft RPC) is a free one, so parallel test workers
never collide, and Go profiling, telemetry and vectorizer modules are off.

It runs as production should: anonymous access off, API-key authentication, RBAC on, and
database users (created through the API, each with a key of its own) on. One root user,
`ADMIN_USER`, holds `admin_key` (made fresh per server, never logged): it is the operator's,
which creates a user and a role per namespace for the runners (`opspawn.operator.memory_access`).
"""

from __future__ import annotations

import os
import secrets
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess, ProcessFailedError
from opspawn.dev.tools import WEAVIATE, tool_binary

NODE_NAME = "node1"
ADMIN_USER = "opspawn-operator"
"""The root user whose key the operator holds."""
CLUSTER_PORTS = (
    "CLUSTER_GOSSIP_BIND_PORT",
    "CLUSTER_DATA_BIND_PORT",
    "RAFT_PORT",
    "RAFT_INTERNAL_RPC_PORT",
)
"""The node-to-node ports a single node still opens; each gets a free port of its own."""
BIND_ATTEMPTS = 3


@dataclass
class WeaviateServer:
    """A single-node Weaviate with its data under `workdir`, API keys and RBAC, no modules."""

    workdir: Path
    http_port: int = 0
    grpc_port: int = 0
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    """The root user's API key (`ADMIN_USER`); kept across restarts of this server."""
    process: ManagedProcess | None = None
    _cluster_ports: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """The REST endpoint, as OPSPAWN_WEAVIATE_URL takes it."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_key_file(self) -> Path:
        """A file (mode 0600) with `admin_key`, as `--weaviate-api-key-file` takes it."""
        return self.workdir / "admin-key"

    @property
    def grpc_address(self) -> str:
        """The gRPC endpoint (host:port), as OPSPAWN_WEAVIATE_GRPC_ADDRESS takes it."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until ready. Ports this call picks are picked again when Weaviate
        finds one taken (nothing reserves a free port between the pick and the bind)."""
        chosen_here = {"http": not self.http_port, "grpc": not self.grpc_port}
        for attempt in range(1, BIND_ATTEMPTS + 1):
            logged = self._log.stat().st_size if self._log.exists() else 0
            try:
                self._start_once(timeout)
                return
            except ProcessFailedError:
                if attempt == BIND_ATTEMPTS or not self._lost_a_port_race(since=logged):
                    raise
            self.http_port = 0 if chosen_here["http"] else self.http_port
            self.grpc_port = 0 if chosen_here["grpc"] else self.grpc_port
            self._cluster_ports.clear()

    @property
    def _log(self) -> Path:
        return self.workdir / "weaviate.log"

    def _lost_a_port_race(self, since: int) -> bool:
        with self._log.open("rb") as log:
            log.seek(since)
            return b"address already in use" in log.read()

    def _start_once(self, timeout: float) -> None:
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        for name in CLUSTER_PORTS:
            self._cluster_ports.setdefault(name, free_port())
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.admin_key_file.touch(mode=0o600)
        self.admin_key_file.write_text(self.admin_key)
        self.process = ManagedProcess(
            name="weaviate",
            argv=[
                str(tool_binary(WEAVIATE.name)),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.http_port),
                "--scheme",
                "http",
            ],
            log_path=self._log,
            env=self._environment(data),
        )
        self.process.start()
        self.process.wait_ready(self.ready, timeout)

    def _environment(self, data: Path) -> dict[str, str]:
        ports = {name: str(port) for name, port in self._cluster_ports.items()}
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PERSISTENCE_DATA_PATH": str(data),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
            "AUTHENTICATION_APIKEY_ENABLED": "true",
            "AUTHENTICATION_APIKEY_ALLOWED_KEYS": self.admin_key,
            "AUTHENTICATION_APIKEY_USERS": ADMIN_USER,
            "AUTHENTICATION_DB_USERS_ENABLED": "true",
            "AUTHORIZATION_RBAC_ENABLED": "true",
            "AUTHORIZATION_RBAC_ROOT_USERS": ADMIN_USER,
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
