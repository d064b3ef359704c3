"""One real node per machine: kubelet, kube-proxy and kube-router use the machine's cgroups and
iptables. Whoever starts a node holds this lock until the node is gone; pytest workers and
`opspawn dev up --node real` wait for it in turn."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_PATH = Path("/run/opspawn-realnode.lock")


class NodeBusyError(RuntimeError):
    """Another process kept the machine's real node for longer than we could wait."""


@contextmanager
def machine_lock(timeout: float, path: Path = LOCK_PATH) -> Iterator[None]:
    """Hold the machine-wide real-node lock, waiting at most `timeout` seconds for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeBusyError(
                        f"another real node holds {path} (waited {timeout:.0f}s)"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
