"""Kubernetes Events on task transitions: rate-limited, and posted in the background.

Like client-go's event broadcaster, recording never waits for the apiserver: a reconcile
queues the Event and goes on, a few posters send the queue, and when the apiserver falls far
behind the newest Events beyond `max_queued` are dropped (Events are best effort; status and
the audit trail are the record). A flapping task cannot flood etcd: one Event per task and
reason within `interval` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.operator.kube import KubeClient
from opspawn.operator.views import TaskView

logger = logging.getLogger(__name__)

POSTERS = 4
MAX_QUEUED = 1000


@dataclass(frozen=True)
class _Event:
    namespace: str
    name: str
    uid: str
    reason: str
    message: str
    warning: bool
    time: str


class EventRecorder:
    """Queues at most one Event per task and reason within `interval` seconds; `run` posts
    them."""

    def __init__(
        self,
        kube: KubeClient,
        interval: float,
        *,
        posters: int = POSTERS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._kube = kube
        self._interval = interval
        self._posters = posters
        self._last: dict[str, dict[str, float]] = {}
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(maxsize=max_queued)

    def record(
        self, task: TaskView, reason: str, message: str, *, warning: bool, time_text: str
    ) -> None:
        now = time.monotonic()
        posted = self._last.setdefault(task.uid, {})
        last = posted.get(reason)
        if last is not None and now - last < self._interval:
            return
        posted[reason] = now
        event = _Event(task.namespace, task.name, task.uid, reason, message, warning, time_text)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.debug("dropped the %s event: the apiserver is behind", reason)

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)

    async def run(self) -> None:
        """Post queued Events until cancelled."""
        posters = [asyncio.create_task(self._post_queued()) for _ in range(self._posters)]
        try:
            await asyncio.gather(*posters)
        finally:
            for poster in posters:
                poster.cancel()
            await asyncio.gather(*posters, return_exceptions=True)

    async def _post_queued(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._kube.post_event(
                    namespace=event.namespace,
                    name=event.name,
                    uid=event.uid,
                    reason=event.reason,
                    message=event.message,
                    warning=event.warning,
                    time=event.time,
                )
            except Exception as error:  # best effort: never lose a poster
                detail = (
                    f"{error.status} {error.reason}"
                    if isinstance(error, ApiException)
                    else type(error).__name__
                )
                logger.warning(
                    "could not post the %s event: %s",
                    event.reason,
                    detail,
                    extra={"k8s_ref": {"namespace": event.namespace, "name": event.name}},
                )
            finally:
                self._queue.task_done()
