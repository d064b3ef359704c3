"""The status mirror against a slow apiserver: one write per task in flight, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from opspawn.api.events import StepPayload, TaskRef, build_event
from opspawn.operator.kube import KubeClient
from opspawn.operator.mirror import StatusMirror
from opspawn.operator.store import Store
from opspawn.operator.views import TaskView

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

TASK = TaskRef(namespace="team-a", task_name="summary", task_uid="summary", attempt=1)
"""In these tests a task's uid is its name, so that a write's response can name its task."""


class SlowStatusWrites:
    """Stands in for KubeClient.patch_task_status: each write waits until released; records
    which task each write was for, in the order the writes started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.patches: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.status: dict[str, Any] = {}

    async def patch_task_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self.started.append(name)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        self.patches.append(dict(status))
        self.status.update(status)
        return _body(self.status, name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _body(status: Mapping[str, Any], name: str = TASK.task_name) -> dict[str, Any]:
    return {
        "metadata": {"namespace": TASK.namespace, "name": name, "uid": name},
        "spec": {},
        "status": dict(status),
    }


def _step(sequence: int) -> Any:
    return build_event(TASK, sequence, StepPayload(step=sequence, summary=f"step {sequence}"))


async def _until(condition: Any, what: str) -> None:
    """Poll `condition` for up to five seconds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 5 s: {what}")


async def test_a_slow_write_is_never_overlapped_and_the_last_state_is_written() -> None:
    store = Store()
    store.put_task(TaskView.from_body(_body({})))
    kube = SlowStatusWrites()
    mirror = StatusMirror(cast(KubeClient, kube), store, interval=0.01, writes_in_flight=8)
    running = asyncio.create_task(mirror.run())
    try:
        mirror.observe([_step(1)])
        await _until(lambda: kube.in_flight == 1, "the first write starts at once")
        for sequence in range(2, 30):
            mirror.observe([_step(sequence)])
            await asyncio.sleep(0.005)  # several intervals pass while the write hangs
        kube.release.set()
        await _until(lambda: kube.status.get("steps") == 29, "the newest step is written")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert kube.most_in_flight == 1
    assert len(kube.patches) == 2  # the first state, then everything that came meanwhile
    assert kube.status["lastEvent"]["sequence"] == 29


async def test_writes_wait_their_turn_oldest_first_and_none_is_lost() -> None:
    names = [f"task-{index}" for index in range(5)]
    store = Store()
    for name in names:
        store.put_task(TaskView.from_body(_body({}, name)))
    kube = SlowStatusWrites()
    mirror = StatusMirror(cast(KubeClient, kube), store, interval=0.01, writes_in_flight=2)
    running = asyncio.create_task(mirror.run())
    try:
        for name in names:
            ref = TaskRef(namespace=TASK.namespace, task_name=name, task_uid=name, attempt=1)
            mirror.observe([build_event(ref, 1, StepPayload(step=1, summary="step 1"))])
            await asyncio.sleep(0.005)
        await _until(lambda: kube.in_flight == 2, "two writes start")
        await asyncio.sleep(0.05)  # the others are due by now, but wait for a free write
        assert kube.in_flight == 2
        kube.release.set()
        await _until(lambda: len(kube.patches) == len(names), "every task is written")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert kube.most_in_flight == 2
    assert kube.started == names  # in the order their news came in
