"""The work queue: coalescing, one worker per key, delayed adds, retries with backoff.

Time is the event loop's own clock, replaced by one that only the test moves: timers fire when
the test advances it, so nothing here sleeps or depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from opspawn.operator.workqueue import RETRY_DELAYS, WorkQueue

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def settle() -> None:
    """Let every task that can run, run (the loop never waits while a handle is ready)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Clock:
    """The running loop's clock, moved by `advance` only."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self._now = loop.time()
        monkeypatch.setattr(loop, "time", self.time)

    def time(self) -> float:
        return self._now

    async def advance(self, seconds: float) -> None:
        self._now += seconds
        await settle()


class Process:
    """A reconcile stand-in: records each call; keys can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.active: set[str] = set()
        self.overlapped: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.failures: dict[str, int] = {}

    def hold(self, key: str) -> asyncio.Event:
        """Calls for `key` wait until the returned event is set."""
        gate = self.gates[key] = asyncio.Event()
        return gate

    async def __call__(self, key: str) -> None:
        if key in self.active:
            self.overlapped.append(key)
        self.active.add(key)
        self.calls.append(key)
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise RuntimeError(f"reconcile of {key} failed")
        finally:
            self.active.discard(key)


@asynccontextmanager
async def workers(queue: WorkQueue, process: Process, count: int = 1) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(queue.run_worker(process)) for _ in range(count)]
    try:
        yield
    finally:
        for worker in tasks:
            worker.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- add


async def test_adds_before_processing_coalesce_into_one_run() -> None:
    queue, process = WorkQueue(), Process()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2

    async with workers(queue, process, count=3):
        await settle()

    assert sorted(process.calls) == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_is_never_processed_by_two_workers_at_once() -> None:
    queue, process = WorkQueue(), Process()
    gate = process.hold("a")

    async with workers(queue, process, count=4):
        queue.add("a")
        await settle()
        queue.add("a")
        await settle()
        assert process.calls == ["a"]

        gate.set()
        await settle()

    assert process.calls == ["a", "a"]
    assert process.overlapped == []


async def test_adds_while_a_key_is_processed_coalesce_into_one_more_run() -> None:
    queue, process = WorkQueue(), Process()
    gate = process.hold("a")

    async with workers(queue, process):
        queue.add("a")
        await settle()
        for _ in range(3):
            queue.add("a")
        assert len(queue) == 1
        gate.set()
        await settle()

    assert process.calls == ["a", "a"]


async def test_other_keys_proceed_while_one_is_processed() -> None:
    queue, process = WorkQueue(), Process()
    gate = process.hold("slow")

    async with workers(queue, process, count=2):
        queue.add("slow")
        await settle()
        queue.add("b")
        queue.add("c")
        await settle()
        assert process.calls == ["slow", "b", "c"]
        gate.set()
        await settle()


# --------------------------------------------------------------------------- add_after


async def test_add_after_adds_the_key_once_the_delay_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 5)
        await clock.advance(4.9)
        assert process.calls == []
        await clock.advance(0.2)
        assert process.calls == ["a"]


async def test_add_after_keeps_an_earlier_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 1)
        queue.add_after("a", 60)
        await clock.advance(1.1)
        assert process.calls == ["a"]
        await clock.advance(60)
        assert process.calls == ["a"]


async def test_add_after_with_a_shorter_delay_replaces_a_later_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 60)
        queue.add_after("a", 1)
        await clock.advance(1.1)
        assert process.calls == ["a"]
        await clock.advance(60)
        assert process.calls == ["a"]


async def test_a_zero_or_negative_delay_adds_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 0)
        queue.add_after("b", -3)
        await clock.advance(0)

    assert sorted(process.calls) == ["a", "b"]


async def test_a_timer_firing_for_a_queued_key_does_not_run_it_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, queue = Clock(monkeypatch), WorkQueue()
    process = Process()

    queue.add("a")
    queue.add_after("a", 1)
    await clock.advance(2)
    assert len(queue) == 1

    async with workers(queue, process):
        await settle()

    assert process.calls == ["a"]


async def test_timers_of_different_keys_are_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 10)
        queue.add_after("b", 1)
        await clock.advance(1.1)
        assert process.calls == ["b"]
        await clock.advance(9)
        assert process.calls == ["b", "a"]


async def test_forget_cancels_a_pending_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()

    async with workers(queue, process):
        queue.add_after("a", 1)
        queue.forget("a")
        await clock.advance(10)

    assert process.calls == []


# --------------------------------------------------------------------------- retries


async def test_a_key_whose_processing_raised_is_retried_after_a_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()
    process.failures["a"] = 3

    async with workers(queue, process):
        queue.add("a")
        await settle()
        runs = [len(process.calls)]
        for delay in RETRY_DELAYS[:3]:
            await clock.advance(delay * 0.9)
            runs.append(len(process.calls))
            await clock.advance(delay * 0.2)
            runs.append(len(process.calls))

    # Runs once, fails; waits 0.5 s, fails; 1 s, fails; 2 s, succeeds.
    assert RETRY_DELAYS[:3] == (0.5, 1, 2)
    assert runs == [1, 1, 2, 2, 3, 3, 4]


async def test_the_longest_retry_delay_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()
    process.failures["a"] = len(RETRY_DELAYS) + 2

    async with workers(queue, process):
        queue.add("a")
        await settle()
        for delay in RETRY_DELAYS:
            await clock.advance(delay + 0.01)
        assert len(process.calls) == len(RETRY_DELAYS) + 1
        await clock.advance(RETRY_DELAYS[-1] - 1)
        assert len(process.calls) == len(RETRY_DELAYS) + 1
        await clock.advance(1.01)
        assert len(process.calls) == len(RETRY_DELAYS) + 2


async def test_a_success_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()
    process.failures["a"] = 2

    async with workers(queue, process):
        queue.add("a")
        await settle()
        await clock.advance(0.51)
        await clock.advance(1.01)
        assert len(process.calls) == 3  # failed, failed, succeeded

        process.failures["a"] = 1
        queue.add("a")
        await settle()
        assert len(process.calls) == 4  # failed again: the first delay applies again
        await clock.advance(0.51)
        assert len(process.calls) == 5


async def test_forget_resets_the_failure_count(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, queue, process = Clock(monkeypatch), WorkQueue(), Process()
    process.failures["a"] = 3

    async with workers(queue, process):
        queue.add("a")
        await settle()
        await clock.advance(0.51)
        assert len(process.calls) == 2  # two failures: the next delay would be 1 s

        queue.forget("a")
        queue.add("a")
        await settle()
        assert len(process.calls) == 3
        await clock.advance(0.51)
        assert len(process.calls) == 4


async def test_a_failing_key_does_not_stop_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)  # the retry timer of "bad" never fires
    queue, process = WorkQueue(), Process()
    process.failures["bad"] = 100

    async with workers(queue, process):
        queue.add("bad")
        queue.add("good")
        await settle()
        queue.add("later")
        await settle()

    assert process.calls == ["bad", "good", "later"]


async def test_a_key_added_while_its_failing_run_is_active_runs_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Clock(monkeypatch)
    queue, process = WorkQueue(), Process()
    process.failures["a"] = 1
    gate = process.hold("a")

    async with workers(queue, process):
        queue.add("a")
        await settle()
        queue.add("a")  # e.g. a watch event during the failing reconcile
        gate.set()
        await settle()

    assert process.calls == ["a", "a"]
