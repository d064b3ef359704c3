"""One real node per machine: kubelet, kube-proxy and kube-router use the machine's cgroups and
iptables.

The lock is held by a process of its own, `python -m opspawn.dev.realnode.lock PATH`, started
first and stopped last with the node: it waits for the file lock, writes its pid into the file
once it holds it, and keeps it until it is stopped. So the lock lives exactly as long as the node,
whether a pytest worker or `opspawn dev up --node real` (which exits, leaving its processes)
started it, and whoever comes next waits.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path

LOCK_PATH = Path("/run/opspawn-realnode.lock")


def holder(path: Path) -> str | None:
    """The pid written by the current holder (or the last one), if any."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def hold(path: Path) -> None:
    """Wait for the lock on `path`, announce our pid in it, and keep it until signalled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    hold(Path(sys.argv[1]) if len(sys.argv) > 1 else LOCK_PATH)


if __name__ == "__main__":
    main()
