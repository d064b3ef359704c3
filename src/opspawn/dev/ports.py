"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
NODE_PORT_FLOOR = 30000
"""Kubernetes' default NodePort range starts here; the real node's kube-proxy owns it."""
TRIES = 50


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 when unknown)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now.

    Ports are drawn below the kernel's ephemeral range: the kernel gives ports of that range to
    every outgoing connection (and a busy test machine makes thousands), so a port picked there
    can be taken by some client's connection before the server that was meant to listen on it
    binds. They stay below the NodePort range too. The port is still not reserved: a process
    that fails to bind it should be retried on a new one.
    """
    ceiling = min(_ephemeral_floor(), NODE_PORT_FLOOR)
    if ceiling - LOWEST_PORT > TRIES:
        for _ in range(TRIES):
            port = LOWEST_PORT + secrets.randbelow(ceiling - LOWEST_PORT)
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
