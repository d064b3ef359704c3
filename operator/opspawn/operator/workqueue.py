"""A work queue of keys in the style of client-go's: each key is processed by one worker at a
time, and a key added again while it waits (or while it is processed) runs once more, not
once per addition. Bursts of watch events for one task therefore cost one reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

RETRY_DELAYS = (0.5, 1, 2, 5, 10, 30, 60)
"""Delays before a key whose processing raised is tried again (the last one repeats)."""


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._active: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: str) -> None:
        if key in self._pending:
            return
        self._pending.add(key)
        if key not in self._active:
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending timer for it wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: str) -> None:
        """Drop a key's timer and failure count (its object is gone)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    async def run_worker(self, process: Callable[[str], Awaitable[None]]) -> None:
        """Process keys forever; a key whose processing raises is added again with backoff."""
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            self._active.add(key)
            try:
                await process(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                self.add_after(key, RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
            else:
                self._failures.pop(key, None)
            finally:
                self._active.discard(key)
                if key in self._pending:
                    self._queue.put_nowait(key)
