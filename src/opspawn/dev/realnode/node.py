"""A real Kubernetes node beside the local control plane: containerd + runc, the kubelet,
kube-scheduler, kube-proxy (iptables) and kube-router (NetworkPolicy only), on a CNI bridge of
its own.

`RealNode.start()` needs a started `ControlPlane` and the machine-wide lock (`lock.py`); it
registers the Node `opspawn-realnode`, waits for it to be Ready, and only then starts kube-router
(which needs the Node object). `stop()` leaves nothing on the host: no process, mount, bridge,
iptables rule, ipset or kubelet cgroup (`host.py`, `network.py`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client, config

from opspawn.dev.binaries import cache_root, node_binaries
from opspawn.dev.controlplane import SERVICE_CIDR, ControlPlane
from opspawn.dev.ports import free_port, is_listening
from opspawn.dev.processes import ManagedProcess, ProcessFailedError, stop_process_group
from opspawn.dev.rbac import grant_cluster_role
from opspawn.dev.realnode import host, lock, network
from opspawn.dev.realnode.containerd import Containerd
from opspawn.dev.realnode.pause import REFERENCE as PAUSE_IMAGE
from opspawn.dev.realnode.pause import pause_archive
from opspawn.dev.tools import tool_binary

NODE_NAME = "opspawn-realnode"
KUBELET_ROOT = Path("/var/lib/opspawn-realnode/kubelet")
"""The kubelet's root dir (one node per machine): short, because the kubelet serves unix sockets
under it (a socket path has at most 104 characters) and a work dir may be deep."""


class NodeBusyError(RuntimeError):
    """Another real node kept this machine for longer than we could wait."""


KUBE_ROUTER_USER = "opspawn:kube-router"
KUBE_ROUTER_RULES = [
    {
        "apiGroups": [""],
        "resources": ["namespaces", "pods", "services", "endpoints", "nodes"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    },
]
"""kube-router as a firewall only reads Pods, namespaces and NetworkPolicies."""


def _kubelet_configuration(node: RealNode, ca: Path) -> dict[str, object]:
    """For this machine kind: cgroup v1 allowed, cgroupfs, no swap check, low disk thresholds
    (a shared disk), images never collected, every port private to the host."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{node.containerd.socket}",
        "address": "127.0.0.1",
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.kubelet_healthz_port,
        "resolvConf": "",
        "failSwapOn": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "podLogsDir": str(node.pod_logs),
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
    }


@dataclass
class RealNode:
    """The node's processes under `workdir`; host services reach Pods through `expose()`."""

    workdir: Path
    containerd_root: Path = field(default_factory=lambda: cache_root() / "realnode" / "containerd")
    """Kept across runs (`~/.cache/opspawn/realnode/containerd`) so imported images stay."""
    containerd: Containerd = field(init=False)
    processes: list[ManagedProcess] = field(default_factory=list)
    kubelet_port: int = 0
    kubelet_healthz_port: int = 0
    apiserver_relay_port: int = 0
    lock_path: Path = lock.LOCK_PATH
    lock_timeout: float = 600.0
    """How long to wait for another node on this machine to go away."""
    started_seconds: float = 0.0
    """From the machine's lock taken to the Node Ready and kube-router synced."""
    _locked_at: float = 0.0
    _sysctls: dict[str, str] = field(default_factory=dict)
    _lock_holder: ManagedProcess | None = None
    _owns_lock: bool = False

    def __post_init__(self) -> None:
        self.containerd = Containerd(
            self.workdir / "containerd",
            sandbox_image=PAUSE_IMAGE,
            cni_conf_dir=self.workdir / "cni" / "net.d",
            root_dir=self.containerd_root,
        )

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    @property
    def address(self) -> str:
        """The host, as Pods reach it (where `expose()` listens)."""
        return network.BRIDGE_ADDRESS

    def start(self, control_plane: ControlPlane, timeout: float = 120.0) -> None:
        """Start the node against `control_plane`; on failure stop what was started."""
        try:
            self._start(control_plane, timeout)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - self._locked_at

    def all_processes(self) -> list[ManagedProcess]:
        """Every process of the node in start order, the lock's holder first."""
        holder = [self._lock_holder] if self._lock_holder is not None else []
        return holder + self.processes

    def _start(self, control_plane: ControlPlane, timeout: float) -> None:
        binaries = node_binaries()
        kube_router = tool_binary("kube-router")
        archive = pause_archive()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._take_machine_lock()
        # Whatever a node killed before its teardown left (we hold the machine's lock).
        self._clean_host()
        self.apiserver_relay_port = free_port()
        network.create(network.HostRoute(self.apiserver_relay_port))
        network.write_cni_config(self.workdir / "cni" / "net.d", self.workdir / "cni" / "ipam")
        self._start_relay(
            [(self.apiserver_relay_port, control_plane.apiserver_port)], "apiserver-relay"
        )
        self.containerd.start()
        self.processes.append(self.containerd.process)  # type: ignore[arg-type]
        self.import_image(archive)
        self._grant(control_plane)
        self._sysctls = host.read_sysctls()
        self._start_kubelet(control_plane, binaries["kubelet"])
        scheduler = self._kubeconfig(control_plane, "scheduler", "system:kube-scheduler")
        self._start_component(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={scheduler}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )
        self._start_component(
            "kube-proxy",
            [
                str(binaries["kube-proxy"]),
                f"--kubeconfig={self._kubeconfig(control_plane, 'proxy', 'system:kube-proxy')}",
                "--proxy-mode=iptables",
                "--conntrack-max-per-core=0",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={network.POD_CIDR}",
                f"--healthz-bind-address=127.0.0.1:{free_port()}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                "--iptables-localhost-nodeports=false",
                "--v=1",
            ],
        )
        self._wait_node_ready(control_plane, timeout)
        self._start_component(
            "kube-router",
            [
                str(kube_router),
                f"--kubeconfig={self._kubeconfig(control_plane, 'kube-router', KUBE_ROUTER_USER)}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                f"--hostname-override={NODE_NAME}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--health-port={free_port()}",
                "--metrics-port=0",
                "--v=1",
            ],
        )
        self._wait_firewall_ready(timeout)

    # ------------------------------------------------------------------ pieces

    def _take_machine_lock(self) -> None:
        holder = ManagedProcess(
            name="realnode-lock",
            argv=[sys.executable, "-m", "opspawn.dev.realnode.lock", str(self.lock_path)],
            log_path=self.workdir / "lock.log",
        )
        holder.start()
        self._lock_holder = holder
        try:
            holder.wait_ready(
                lambda: lock.holder(self.lock_path) == str(holder.pid), self.lock_timeout
            )
            self._owns_lock = True
            self._locked_at = time.monotonic()
        except ProcessFailedError as error:
            raise NodeBusyError(
                f"another real node holds {self.lock_path} (pid {lock.holder(self.lock_path)}); "
                f"waited {self.lock_timeout:.0f}s"
            ) from error

    def _kubeconfig(self, control_plane: ControlPlane, name: str, user: str) -> Path:
        organization = "system:nodes" if user.startswith("system:node:") else None
        return control_plane.kubeconfig_for(f"realnode-{name}", user, organization)

    def _grant(self, control_plane: ControlPlane) -> None:
        """The kubelet's user gets `system:node` (RBAC only: no Node authorizer here);
        kube-router its reads. The scheduler's and kube-proxy's users have bootstrap bindings."""
        api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
        try:
            rbac = client.RbacAuthorizationV1Api(api)
            binding = {
                "metadata": {"name": f"opspawn:{NODE_NAME}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": f"system:node:{NODE_NAME}",
                    }
                ],
            }
            try:
                rbac.create_cluster_role_binding(binding)
            except client.exceptions.ApiException as error:
                if error.status != 409:
                    raise
        finally:
            api.close()
        grant_cluster_role(
            control_plane.kubeconfig, KUBE_ROUTER_USER, KUBE_ROUTER_USER, KUBE_ROUTER_RULES
        )

    def _start_relay(self, ports: list[tuple[int, int]], name: str) -> None:
        relay = ManagedProcess(
            name=name,
            argv=[
                sys.executable,
                "-m",
                "opspawn.dev.realnode.relay",
                network.BRIDGE_ADDRESS,
                *(f"{listen}:{target}" for listen, target in ports),
            ],
            log_path=self.workdir / f"{name}.log",
        )
        relay.start()
        self.processes.append(relay)
        relay.wait_ready(
            lambda: all(is_listening(port, network.BRIDGE_ADDRESS) for port, _ in ports), 20
        )

    def expose(self, name: str, ports: list[int]) -> None:
        """Let Pods reach host services on 127.0.0.1 at `ports`: at the same ports of
        `address` (a relay process of the node)."""
        self._start_relay([(port, port) for port in ports], f"relay-{name}")

    def import_image(self, archive: Path) -> float:
        """Import a docker-archive into the node's containerd unless this very archive (path,
        size, modification time) was imported before; the seconds it took (0 when skipped)."""
        record = self.containerd_root.parent / "imported.json"
        imported = json.loads(record.read_text()) if record.exists() else {}
        stat = archive.stat()
        fingerprint = f"{stat.st_size}-{stat.st_mtime_ns}"
        if imported.get(str(archive)) == fingerprint:
            return 0.0
        seconds = self.containerd.import_image(archive)
        imported[str(archive)] = fingerprint
        record.write_text(json.dumps(imported, indent=1))
        return seconds

    def _start_component(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name=name, argv=argv, log_path=self.workdir / f"{name}.log")
        process.start()
        self.processes.append(process)
        return process

    def _start_kubelet(self, control_plane: ControlPlane, binary: Path) -> None:
        self.kubelet_port = free_port()
        self.kubelet_healthz_port = free_port()
        ca = control_plane.workdir / "pki" / "ca.crt"
        configuration = self.workdir / "kubelet-config.yaml"
        configuration.write_text(yaml.safe_dump(_kubelet_configuration(self, ca)))
        self.pod_logs.mkdir(parents=True, exist_ok=True)
        kubeconfig = self._kubeconfig(control_plane, "kubelet", f"system:node:{NODE_NAME}")
        self._start_component(
            "kubelet",
            [
                str(binary),
                f"--config={configuration}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={KUBELET_ROOT}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={network.BRIDGE_ADDRESS}",
                "--v=1",
            ],
        )

    def _process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def _wait_node_ready(self, control_plane: ControlPlane, timeout: float) -> None:
        api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
        core = client.CoreV1Api(api)

        def ready() -> bool:
            node = core.read_node(NODE_NAME)
            return any(
                c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
            )

        try:
            self._process("kubelet").wait_ready(ready, timeout)
            # Informative for kube-router (no IPAM controller sets it here); settable once.
            node = core.read_node(NODE_NAME)
            if not node.spec.pod_cidr:
                core.patch_node(
                    NODE_NAME,
                    {"spec": {"podCIDR": network.POD_CIDR, "podCIDRs": [network.POD_CIDR]}},
                )
        finally:
            api.close()

    def _wait_firewall_ready(self, timeout: float) -> None:
        """kube-router has synced once: its pod firewall chain exists in the filter table."""

        def synced() -> bool:
            saved = subprocess.run(
                ["iptables-save", "-t", "filter"], capture_output=True, text=True, check=False
            )
            return ":KUBE-ROUTER-FORWARD" in saved.stdout

        self._process("kube-router").wait_ready(synced, timeout)

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop every component and remove what they left on the host (only when this node got
        the machine's lock: otherwise the host's state is another node's)."""
        for process in reversed(self.processes):
            if process.name != "containerd":
                process.stop()
        if self._owns_lock:
            host.kill_pods()
            self._remove_containers()
        self.containerd.stop()
        for pid in self.containerd.shim_pids():
            stop_process_group(pid, grace=2)
        self.processes.clear()
        if self._owns_lock:
            self._clean_host()
            self._owns_lock = False
        if self._lock_holder is not None:
            self._lock_holder.stop()
            self._lock_holder = None

    def clean_up_after_stop(self) -> None:
        """Remove what the node left after its processes were stopped by their recorded process
        groups (`opspawn dev down`): Pod processes, shims, mounts, network, cgroups."""
        self._take_machine_lock()
        try:
            host.kill_pods()
            for pid in self.containerd.shim_pids():
                stop_process_group(pid, grace=2)
            self._clean_host()
        finally:
            self._owns_lock = False
            if self._lock_holder is not None:
                self._lock_holder.stop()
                self._lock_holder = None

    def _remove_containers(self) -> None:
        """Delete the stopped Pods' containers (and their snapshots) while containerd runs, so
        that the kept root holds images only."""
        if self.containerd.process is None or self.containerd.process.popen is None:
            return
        if self.containerd.process.popen.poll() is not None:
            return
        tasks = self.containerd.ctr("tasks", "list", "--quiet").stdout.split()
        for task in tasks:
            self.containerd.ctr("tasks", "delete", "--force", task)
        containers = self.containerd.ctr("containers", "list", "--quiet").stdout.split()
        if containers:
            self.containerd.ctr("containers", "delete", *containers, timeout=120)

    def _clean_host(self) -> None:
        host.kill_pods()
        host.unmount_under(KUBELET_ROOT)
        shutil.rmtree(KUBELET_ROOT, ignore_errors=True)
        host.unmount_under(self.workdir)
        host.unmount_under(self.containerd_root)
        kube_proxy = node_binaries()["kube-proxy"]
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60, check=False)
        network.remove()
        host.remove_kubepods_cgroups()
        host.remove_container_log_links(self.pod_logs)
        if self._sysctls:
            host.restore_sysctls(self._sysctls)
