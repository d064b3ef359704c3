"""The process kubelet: a dev/test stand-in for a kubelet and a scheduler, without containers.

It registers a Node, keeps its Lease fresh, binds pending Pods whose nodeSelector the Node
satisfies, and runs the Pods bound to it as local processes (see `pod_worker`). It exists so
that the real Job, garbage-collector and TTL controllers can be exercised on a machine with no
container runtime. It is not a security boundary: processes run as the kubelet's own user, with
no image, no volumes, no resource limits and no network isolation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from opspawn.dev.kubelet.environment import Fetch
from opspawn.dev.kubelet.node import register_node, renew_lease, report_status, rfc3339
from opspawn.dev.kubelet.pod_worker import PodWorker

log = logging.getLogger(__name__)

KubeObject = dict[str, Any]

DEFAULT_NODE_NAME = "opspawn-process-kubelet"
INHERITED_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
"""Variables of the kubelet's own environment that processes get (an image would provide
them in a real cluster); everything else comes from the Pod spec."""

WATCH_SECONDS = 10
LEASE_RENEW_SECONDS = 10
NODE_STATUS_SECONDS = 60


def _raw(response: Any) -> Any:
    return json.loads(response.data)


class ProcessKubelet:
    """Schedules onto, and runs Pods of, one Node."""

    def __init__(
        self, api: client.ApiClient, workdir: Path, node_name: str = DEFAULT_NODE_NAME
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.node_name = node_name
        self.workdir = workdir
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.finished_uids: set[str] = set()
        self.lock = threading.Lock()
        self._heartbeats = 0
        self._labels: dict[str, str] | None = None

    # ------------------------------------------------------------------ services for workers

    def inherited_environment(self) -> dict[str, str]:
        return {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}

    def fetch(self, pod: KubeObject) -> Fetch:
        namespace = pod["metadata"]["namespace"]

        def get(kind: str, name: str) -> KubeObject | None:
            read: Callable[..., Any] = (
                self.core.read_namespaced_secret
                if kind == "Secret"
                else self.core.read_namespaced_config_map
            )
            try:
                result: KubeObject = _raw(read(name, namespace, _preload_content=False))
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return result

        return get

    def write_pod_status(self, pod: KubeObject, status: KubeObject) -> None:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _preload_content=False
            )
        except ApiException as error:
            if error.status != 404:
                log.warning(
                    "process kubelet: status of %s/%s not written: %s",
                    meta["namespace"],
                    meta["name"],
                    error.reason,
                )

    def delete_pod(self, pod: KubeObject) -> None:
        """Final removal of a Pod whose processes are gone (the kubelet's part of deletion)."""
        meta = pod["metadata"]
        body = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.core.delete_namespaced_pod(
                meta["name"], meta["namespace"], body=body, _preload_content=False
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise
        with self.lock:
            self.workers.pop(meta["uid"], None)
            self.finished_uids.add(meta["uid"])

    def pod_finished(self, worker: PodWorker) -> None:
        with self.lock:
            self.finished_uids.add(worker.uid)
            # Keep the worker: a deletion later still has to remove the Pod.

    # ------------------------------------------------------------------ main loops

    def run(self) -> None:
        """Run until `stop()`; then stop every process this kubelet started."""
        register_node(self.core, self.node_name)
        renew_lease(self.coordination, self.node_name)
        threads = [
            threading.Thread(
                target=self._loop,
                args=(self._heartbeat_once, LEASE_RENEW_SECONDS),
                daemon=True,
                name="heartbeat",
            ),
            threading.Thread(
                target=self._watch_loop,
                args=(f"spec.nodeName={self.node_name}", self._sync_own_pod),
                daemon=True,
                name="pods",
            ),
            threading.Thread(
                target=self._watch_loop,
                args=("spec.nodeName=", self._maybe_bind),
                daemon=True,
                name="binder",
            ),
        ]
        for thread in threads:
            thread.start()
        self.stopping.wait()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop_all(grace=2)

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self, action: Callable[[], None], seconds: float) -> None:
        while not self.stopping.wait(seconds):
            try:
                action()
            except Exception:
                log.exception("process kubelet: %s failed", action.__name__)

    def _heartbeat_once(self) -> None:
        renew_lease(self.coordination, self.node_name)
        self._heartbeats += 1
        if self._heartbeats * LEASE_RENEW_SECONDS >= NODE_STATUS_SECONDS:
            self._heartbeats = 0
            report_status(self.core, self.node_name)

    def _watch_loop(self, field_selector: str, handle: Callable[[KubeObject], None]) -> None:
        """List, then watch from the list's resourceVersion; relist on expiry or error."""
        while not self.stopping.is_set():
            try:
                listing = _raw(
                    self.core.list_pod_for_all_namespaces(
                        field_selector=field_selector, _preload_content=False
                    )
                )
                for pod in listing["items"]:
                    handle(pod)
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=field_selector,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    if self.stopping.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handle(event["raw_object"])
                    elif event["type"] == "ERROR":
                        break
            except Exception:
                if not self.stopping.is_set():
                    log.exception("process kubelet: watch %s failed; relisting", field_selector)
                    self.stopping.wait(1)

    # ------------------------------------------------------------------ scheduling

    def _maybe_bind(self, pod: KubeObject) -> None:
        spec = pod["spec"]
        meta = pod["metadata"]
        if spec.get("nodeName") or meta.get("deletionTimestamp"):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        if spec.get("schedulingGates"):
            return
        node_labels = {"kubernetes.io/hostname": self.node_name, **self._node_labels()}
        selector = spec.get("nodeSelector") or {}
        if any(node_labels.get(key) != value for key, value in selector.items()):
            self._mark_unschedulable(
                pod,
                f"0/1 nodes are available: {self.node_name} does not match the nodeSelector",
            )
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.core.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], binding, _preload_content=False
            )
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning(
                    "process kubelet: binding %s/%s failed: %s",
                    meta["namespace"],
                    meta["name"],
                    error.reason,
                )

    def _node_labels(self) -> dict[str, str]:
        if self._labels is None:
            node = _raw(self.core.read_node(self.node_name, _preload_content=False))
            self._labels = dict(node["metadata"].get("labels", {}))
        return self._labels

    def _mark_unschedulable(self, pod: KubeObject, message: str) -> None:
        conditions = pod.get("status", {}).get("conditions") or []
        if any(
            c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
            for c in conditions
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": rfc3339(),
        }
        self.write_pod_status(pod, {"conditions": [condition]})

    # ------------------------------------------------------------------ running

    def _sync_own_pod(self, pod: KubeObject) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = pod.get("status", {}).get("phase")
        deleting = meta.get("deletionTimestamp") is not None
        with self.lock:
            worker = self.workers.get(uid)
            seen = uid in self.finished_uids
        if worker is not None:
            worker.update(pod)
            if deleting and worker.finished.is_set():
                self.delete_pod(pod)
            return
        if phase in ("Succeeded", "Failed") or seen:
            if deleting:
                self.delete_pod(pod)
            return
        if deleting:
            self.delete_pod(pod)
            return
        if self._started_elsewhere(pod):
            self._mark_lost(pod)
            return
        worker = PodWorker(
            self, pod, self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{uid}"
        )
        with self.lock:
            if uid in self.workers or self.stopping.is_set():
                return
            self.workers[uid] = worker
        worker.start()

    @staticmethod
    def _started_elsewhere(pod: KubeObject) -> bool:
        """Did an earlier process kubelet start this Pod? Its processes are not ours to find."""
        status = pod.get("status", {})
        if status.get("phase") == "Running":
            return True
        statuses = status.get("containerStatuses") or []
        return any("running" in (s.get("state") or {}) for s in statuses)

    def _mark_lost(self, pod: KubeObject) -> None:
        """Fail a Pod whose processes belonged to an earlier kubelet instance."""
        now = rfc3339()
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located after a kubelet restart",
                        "finishedAt": now,
                    }
                },
            }
            for c in pod["spec"].get("containers") or []
        ]
        self.write_pod_status(pod, {"phase": "Failed", "containerStatuses": statuses})
        with self.lock:
            self.finished_uids.add(pod["metadata"]["uid"])
