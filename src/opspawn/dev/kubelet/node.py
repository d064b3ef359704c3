"""The process kubelet's Node object and its heartbeat (a Lease in kube-node-lease)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from opspawn.dev.binaries import KUBERNETES_VERSION

NODE_LABEL = "opspawn.io/process-kubelet"
"""Label on the Node; Pods select it with a nodeSelector when several node kinds exist."""

LEASE_DURATION_SECONDS = 40


def rfc3339(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def node_labels(name: str) -> dict[str, str]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        NODE_LABEL: "true",
    }


def node_status(name: str) -> dict[str, Any]:
    now = rfc3339()
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_bytes() // 1024}Ki",
        "pods": "250",
    }

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "process kubelet"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "process kubelet"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "process kubelet"),
            condition("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "bootID": str(uuid.uuid4()),
            "kernelVersion": platform.release(),
            "osImage": "opspawn process kubelet (dev/test only)",
            "containerRuntimeVersion": "process://opspawn",
            "kubeletVersion": KUBERNETES_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": node_labels(name)["kubernetes.io/arch"],
        },
    }


def register_node(core: client.CoreV1Api, name: str) -> None:
    """Create (or adopt) the Node and report it Ready."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name)},
    }
    try:
        core.create_node(body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.patch_node(name, {"metadata": {"labels": node_labels(name)}})
    report_status(core, name)


def report_status(core: client.CoreV1Api, name: str) -> None:
    core.patch_node_status(name, {"status": node_status(name)})


def renew_lease(coordination: client.CoordinationV1Api, name: str) -> None:
    """Renew the node Lease that the node-lifecycle controller watches."""
    namespace = "kube-node-lease"
    spec = {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": _micro_time(),
    }
    try:
        coordination.patch_namespaced_lease(name, namespace, {"spec": spec})
    except ApiException as error:
        if error.status != 404:
            raise
        coordination.create_namespaced_lease(
            namespace,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name},
                "spec": spec,
            },
        )
