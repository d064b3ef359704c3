"""The real node's network: a bridge of its own with one /24 for Pods, and the iptables rules
that keep every Pod packet on this machine.

- The bridge (`opspawn0`, the /24's first address) is created here, before any Pod, so that host
  services can listen on its address; the CNI `bridge` plugin then finds it and attaches Pods.
- The `kubernetes` Service address (10.0.0.1:443) is DNATed, for packets from the Pod range, to
  the apiserver's relay on the bridge address (the apiserver itself advertises 127.0.0.1, so the
  Service has no endpoints).
- mangle POSTROUTING drops Pod-range packets that would leave through any other interface: it
  runs after the rules kube-proxy and kube-router add, so nothing they do lets a packet out.

`remove()` takes all of it away again, together with what kube-proxy, the kubelet and
kube-router left (every chain named KUBE-*, their jumps and their ipsets: `kube-router
--cleanup-config` does not work on kernels without IPVS).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "opspawn0"
POD_CIDR = "10.213.0.0/24"
BRIDGE_ADDRESS = "10.213.0.1"
"""The host, as Pods reach it: the Pods' gateway, where host services listen for them."""
KUBERNETES_SERVICE = ("10.0.0.1", 443)
"""The `kubernetes` Service in the control plane's SERVICE_CIDR."""
CNI_NETWORK = "opspawn-realnode"

CHAIN_PREFIXES = ("KUBE-", "OPSPAWN-")
"""Chains of the node's components (kube-proxy, kubelet, kube-router) and of ours."""
IPSET_PREFIXES = ("KUBE-", "kube-router", "inet6:KUBE-", "inet6:kube-router")
EGRESS_CHAIN = "OPSPAWN-POD-EGRESS"
APISERVER_CHAIN = "OPSPAWN-APISERVER"
TABLES = ("raw", "mangle", "nat", "filter")


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {completed.stderr.strip()}")
    return completed


def cni_config(ipam_dir: Path) -> dict[str, object]:
    """The CNI conflist: the bridge (no masquerading, hairpin on) with host-local IPAM whose
    state stays under the node's work dir, and portmap."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": BRIDGE_ADDRESS}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_cni_config(conf_dir: Path, ipam_dir: Path) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-opspawn.conflist").write_text(json.dumps(cni_config(ipam_dir), indent=2))


@dataclass(frozen=True)
class HostRoute:
    """Where Pod packets to `KUBERNETES_SERVICE` go instead: the apiserver's relay."""

    apiserver_relay_port: int


def create(route: HostRoute) -> None:
    """The bridge with its address, and the node's own iptables rules."""
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    # Nothing from the Pod range leaves except over the bridge (to Pods) or to the host itself.
    _run(["iptables", "-t", "mangle", "-N", EGRESS_CHAIN])
    _run(["iptables", "-t", "mangle", "-A", EGRESS_CHAIN, "-o", BRIDGE, "-j", "RETURN"])
    _run(["iptables", "-t", "mangle", "-A", EGRESS_CHAIN, "-o", "lo", "-j", "RETURN"])
    _run(["iptables", "-t", "mangle", "-A", EGRESS_CHAIN, "-j", "DROP"])
    _run(["iptables", "-t", "mangle", "-A", "POSTROUTING", "-s", POD_CIDR, "-j", EGRESS_CHAIN])
    service_ip, service_port = KUBERNETES_SERVICE
    _run(["iptables", "-t", "nat", "-N", APISERVER_CHAIN])
    _run(
        [
            "iptables",
            "-t",
            "nat",
            "-A",
            APISERVER_CHAIN,
            "-p",
            "tcp",
            "-d",
            service_ip,
            "--dport",
            str(service_port),
            "-j",
            "DNAT",
            "--to-destination",
            f"{BRIDGE_ADDRESS}:{route.apiserver_relay_port}",
        ]
    )
    _run(["iptables", "-t", "nat", "-I", "PREROUTING", "1", "-s", POD_CIDR, "-j", APISERVER_CHAIN])


def _owned(chain: str) -> bool:
    return chain.startswith(CHAIN_PREFIXES)


def _remove_chains(command: str) -> None:
    """Delete every jump into an owned chain from the built-in chains, then the owned chains."""
    for table in TABLES:
        saved = _run([f"{command}-save", "-t", table], check=False)
        if saved.returncode != 0:
            continue
        chains = [line[1:].split()[0] for line in saved.stdout.splitlines() if line.startswith(":")]
        owned = [chain for chain in chains if _owned(chain)]
        if not owned:
            continue
        for line in saved.stdout.splitlines():
            match = re.match(r"-A (\S+) (.*)", line)
            if match is None or _owned(match.group(1)):
                continue
            if re.search(r"-j (KUBE-|OPSPAWN-)", match.group(2)):
                _run([command, "-t", table, "-D", match.group(1), *shlex.split(match.group(2))])
        for chain in owned:
            _run([command, "-t", table, "-F", chain], check=False)
        for chain in owned:
            _run([command, "-t", table, "-X", chain], check=False)


def owned_rules() -> list[str]:
    """Every iptables and ip6tables rule or chain of the node still present (for checks)."""
    found = []
    for command in ("iptables", "ip6tables"):
        for table in TABLES:
            saved = _run([f"{command}-save", "-t", table], check=False)
            for line in saved.stdout.splitlines():
                if re.match(r":(KUBE-|OPSPAWN-)", line) or re.search(
                    r"(KUBE-|OPSPAWN-|10\.213\.0\.)", line
                ):
                    found.append(f"{command} {table} {line}")
    return found


def owned_ipsets() -> list[str]:
    listed = _run(["ipset", "list", "-n"], check=False)
    return [name for name in listed.stdout.split() if name.startswith(IPSET_PREFIXES)]


def bridge_exists() -> bool:
    return _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0


def remove() -> None:
    """Everything `create()` and the node's components added to the machine's network."""
    for command in ("iptables", "ip6tables"):
        _remove_chains(command)
    for name in owned_ipsets():
        _run(["ipset", "flush", name], check=False)
    for name in owned_ipsets():
        _run(["ipset", "destroy", name], check=False)
    links = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False)
    for line in links.stdout.splitlines():
        # "7: veth1234@if2: <...>": a Pod's host-side end, left if its netns outlived CNI DEL.
        name = line.split(":")[1].strip().split("@")[0]
        _run(["ip", "link", "delete", name], check=False)
    with contextlib.suppress(RuntimeError):
        if bridge_exists():
            _run(["ip", "link", "delete", BRIDGE])
