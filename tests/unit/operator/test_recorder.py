"""Events are queued by the reconcile and posted in the background, rate-limited per task."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from opspawn.operator.kube import KubeClient
from opspawn.operator.recorder import EventRecorder
from opspawn.operator.views import TaskView

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeldEventPosts:
    """Stands in for KubeClient.post_event: posts wait until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.posted: list[tuple[str, str]] = []

    async def post_event(self, *, name: str, reason: str, **_: Any) -> None:
        await self.release.wait()
        self.posted.append((name, reason))


def _task(name: str) -> TaskView:
    return TaskView.from_body(
        {"metadata": {"namespace": "team-a", "name": name, "uid": f"uid-{name}"}, "spec": {}}
    )


def _record(recorder: EventRecorder, task: TaskView, reason: str) -> None:
    recorder.record(task, reason, "message", warning=False, time_text="2026-12-01T00:00:00Z")


async def test_recording_does_not_wait_for_the_apiserver_and_every_event_is_posted() -> None:
    kube = HeldEventPosts()
    recorder = EventRecorder(cast(KubeClient, kube), interval=60, posters=2)
    posting = asyncio.create_task(recorder.run())
    try:
        for name in ("a", "b", "c"):
            _record(recorder, _task(name), "Launched")  # returns while posts are held
        _record(recorder, _task("a"), "Launched")  # within the interval: not again
        _record(recorder, _task("a"), "Succeeded")
        kube.release.set()
        for _ in range(500):
            if len(kube.posted) == 4:
                break
            await asyncio.sleep(0.01)
    finally:
        posting.cancel()
        await asyncio.gather(posting, return_exceptions=True)

    assert sorted(kube.posted) == [
        ("a", "Launched"),
        ("a", "Succeeded"),
        ("b", "Launched"),
        ("c", "Launched"),
    ]


async def test_events_beyond_the_queue_are_dropped_while_the_apiserver_is_behind() -> None:
    kube = HeldEventPosts()
    recorder = EventRecorder(cast(KubeClient, kube), interval=60, posters=1, max_queued=2)
    posting = asyncio.create_task(recorder.run())
    try:
        _record(recorder, _task("a"), "Launched")
        await asyncio.sleep(0.05)  # the poster takes it and waits on the apiserver
        for name in ("b", "c", "d"):
            _record(recorder, _task(name), "Launched")
        kube.release.set()
        for _ in range(500):
            if len(kube.posted) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a fourth post, if one were queued, would have happened
    finally:
        posting.cancel()
        await asyncio.gather(posting, return_exceptions=True)

    assert [name for name, _ in kube.posted] == ["a", "b", "c"]
