"""Following an AgentTask to its end: one plain line each time its progress changes.

A line shows the time since the task was applied, the phase, the steps, the tokens and cost so
far and the last event (or, before the runner reports, what the operator is waiting for). No
cursor tricks: it reads the same in a terminal and in a CI log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Status = Mapping[str, Any]

POLL_SECONDS = 0.25
SETTLE_SECONDS = 15.0
"""After the outcome, how long to wait for the runner's last events (final usage and cost) to
reach the status."""
_CONDITION_OF_PHASE = {"Pending": "Running", "Queued": "Queued", "Running": "Running"}


def condition(status: Status, kind: str) -> Mapping[str, Any]:
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    return found[0] if found else {}


def outcome(status: Status) -> str | None:
    """`Succeeded`, or the phase the task failed in; None while it runs."""
    if condition(status, "Succeeded").get("status") in ("True", "False"):
        return str(status.get("phase") or "Failed")
    return None


def cost(status: Status) -> str:
    value = (status.get("usage") or {}).get("costUSD")
    return "" if value is None else "$" + f"{value:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Progress:
    phase: str
    steps: int
    tokens: int
    cost: str
    activity: str

    @classmethod
    def of(cls, status: Status) -> Progress:
        phase = str(status.get("phase") or "Pending")
        event = status.get("lastEvent") or {}
        if event:
            activity = str(event.get("summary") or event.get("type"))
        else:
            kind = _CONDITION_OF_PHASE.get(phase, "Succeeded")
            activity = str(condition(status, kind).get("message") or "applied")
        return cls(
            phase=phase,
            steps=int(status.get("steps") or 0),
            tokens=int((status.get("usage") or {}).get("totalTokens") or 0),
            cost=cost(status),
            activity=activity,
        )

    def line(self, elapsed: float) -> str:
        return (
            f"  {elapsed:6.1f}s  {self.phase:<10} step {self.steps:<3} {self.tokens:>7,} tokens"
            f"  {self.cost:>8}  {self.activity}"
        ).rstrip()


def follow(
    read: Callable[[], Status],
    timeout: float,
    show: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Status:
    """Poll `read` for the task's status, showing each change, until the task has an outcome
    and its `finished` event is mirrored (or SETTLE_SECONDS later); the last status."""
    start = clock()
    shown: Progress | None = None
    settle_until: float | None = None
    while True:
        status = read()
        current = Progress.of(status)
        if current != shown:
            show(current.line(clock() - start))
            shown = current
        if outcome(status) is not None:
            settle_until = settle_until or clock() + SETTLE_SECONDS
            last_event = (status.get("lastEvent") or {}).get("type")
            never_ran = not status.get("attempt")
            if last_event == "finished" or never_ran or clock() > settle_until:
                return status
        elif clock() - start > timeout:
            raise TimeoutError(f"the task did not finish within {timeout:.0f}s")
        sleep(POLL_SECONDS)
