"""Kubernetes Events on task transitions, rate-limited so a flapping task cannot flood etcd."""

from __future__ import annotations

import logging
import time

from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.operator.kube import KubeClient
from opspawn.operator.views import TaskView

logger = logging.getLogger(__name__)


class EventRecorder:
    """Posts at most one Event per task and reason within `interval` seconds (best effort)."""

    def __init__(self, kube: KubeClient, interval: float) -> None:
        self._kube = kube
        self._interval = interval
        self._last: dict[str, dict[str, float]] = {}

    async def record(
        self, task: TaskView, reason: str, message: str, *, warning: bool, time_text: str
    ) -> None:
        now = time.monotonic()
        posted = self._last.setdefault(task.uid, {})
        last = posted.get(reason)
        if last is not None and now - last < self._interval:
            return
        posted[reason] = now
        try:
            await self._kube.post_event(
                namespace=task.namespace,
                name=task.name,
                uid=task.uid,
                reason=reason,
                message=message,
                warning=warning,
                time=time_text,
            )
        except ApiException as error:
            logger.warning(
                "could not post the %s event: %s %s",
                reason,
                error.status,
                error.reason,
                extra={"k8s_ref": {"namespace": task.namespace, "name": task.name}},
            )

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)
