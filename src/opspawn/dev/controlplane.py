"""A local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

The apiserver runs with RBAC authorization and the default admission chain (PodSecurity and
ServiceAccount included); the controller manager runs its default controllers (job,
garbage-collector, ttl-after-finished, namespace, serviceaccount …), each under its own
service account, as in a real cluster. There is no kubelet and no scheduler: the process kubelet
(`opspawn.dev.kubelet`) plays both for Pods that target its Node.
"""

from __future__ import annotations

import base64
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from opspawn.dev.pki import CertificateAuthority, KeyPair, service_account_keys
from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess

SERVICE_CIDR = "10.0.0.0/24"

# Writes only, with the user and the object: what `bench/` counts as apiserver writes.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


def write_kubeconfig(path: Path, server: str, ca: Path, client: KeyPair, user: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""

    def encoded(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "opspawn-dev",
                "cluster": {"server": server, "certificate-authority-data": encoded(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": encoded(client.cert),
                    "client-key-data": encoded(client.key),
                },
            }
        ],
        "contexts": [{"name": "opspawn-dev", "context": {"cluster": "opspawn-dev", "user": user}}],
        "current-context": "opspawn-dev",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager under `workdir`, on free ports."""

    workdir: Path
    binaries: dict[str, Path]
    audit_log: bool = False
    etcd_port: int = 0
    apiserver_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (group system:masters)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log_path(self) -> Path:
        return self.workdir / "apiserver-audit.log"

    def kubeconfig_for(self, name: str, common_name: str, organization: str | None = None) -> Path:
        """Issue a client certificate and write a kubeconfig for that identity."""
        pair = self._ca.issue(name, common_name, organization)
        path = self.workdir / f"{name}.kubeconfig"
        write_kubeconfig(path, self.server, self._ca.pair.cert, pair, common_name)
        return path

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        self._ca = CertificateAuthority(pki)
        serving = self._ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ),
            server_ips=("127.0.0.1", "10.0.0.1"),
        )
        self._sa_keys = service_account_keys(pki)
        self.etcd_port = self.etcd_port or free_port()
        self.apiserver_port = self.apiserver_port or free_port()
        self._start_etcd(timeout)
        self._start_apiserver(serving, timeout)
        admin = self._ca.issue("admin", "opspawn-admin", "system:masters")
        write_kubeconfig(self.kubeconfig, self.server, self._ca.pair.cert, admin, "opspawn-admin")
        self._start_controller_manager(timeout)

    def _start_etcd(self, timeout: float) -> None:
        peer_port = free_port()
        etcd = ManagedProcess(
            name="etcd",
            argv=[
                str(self.binaries["etcd"]),
                "--name",
                "opspawn-dev",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"opspawn-dev=http://127.0.0.1:{peer_port}",
                # A throwaway dev/test store: durability is not worth the fsync latency.
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            log_path=self.workdir / "etcd.log",
        )
        etcd.start()
        self.processes.append(etcd)

        def healthy() -> bool:
            url = f"http://127.0.0.1:{self.etcd_port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return b'"health":"true"' in response.read()

        etcd.wait_ready(healthy, timeout)

    def _start_apiserver(self, serving: KeyPair, timeout: float) -> None:
        pki = self._ca.directory
        argv = [
            str(self.binaries["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self._ca.pair.cert}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self._sa_keys.cert}",
            f"--service-account-signing-key-file={self._sa_keys.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
            "LimitRanger,ResourceQuota,DefaultTolerationSeconds,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
            "--allow-privileged=false",
            "--profiling=false",
            "--v=1",
        ]
        if self.audit_log:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
            argv += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
            ]
        apiserver = ManagedProcess(
            name="kube-apiserver", argv=argv, log_path=self.workdir / "kube-apiserver.log"
        )
        apiserver.start()
        self.processes.append(apiserver)
        context = ssl.create_default_context(cafile=str(self._ca.pair.cert))
        probe = self._ca.issue("probe", "opspawn-probe", "system:masters")
        context.load_cert_chain(str(probe.cert), str(probe.key))

        def ready() -> bool:
            url = f"{self.server}/readyz"
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
                return bool(response.status == 200)

        apiserver.wait_ready(ready, timeout)

    def _start_controller_manager(self, timeout: float) -> None:
        kubeconfig = self.kubeconfig_for("controller-manager", "system:kube-controller-manager")
        controller_manager = ManagedProcess(
            name="kube-controller-manager",
            argv=[
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'pki' / 'controller-manager'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self._sa_keys.key}",
                f"--root-ca-file={self._ca.pair.cert}",
                f"--cluster-signing-cert-file={self._ca.pair.cert}",
                f"--cluster-signing-key-file={self._ca.pair.key}",
                "--controllers=*",
                "--v=1",
            ],
            log_path=self.workdir / "kube-controller-manager.log",
        )
        controller_manager.start()
        self.processes.append(controller_manager)
        controller_manager.wait_ready(self._default_service_account_exists, timeout)

    def _default_service_account_exists(self) -> bool:
        """The serviceaccount controller is working: Pods can be admitted in `default`."""
        context = ssl.create_default_context(cafile=str(self._ca.pair.cert))
        admin = self._ca.directory
        context.load_cert_chain(str(admin / "admin.crt"), str(admin / "admin.key"))
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
