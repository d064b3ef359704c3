"""Admission under a concurrency cap, and an operator killed mid-run."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.operator.conftest import StartOperator, Tasks, agenttask

CAP = 3


def _runs(log: Path) -> dict[str, tuple[int, int]]:
    """(start, end) in ns of each task, from the fake runner's log."""
    starts: dict[str, int] = {}
    runs: dict[str, tuple[int, int]] = {}
    for line in log.read_text().splitlines():
        what, name, when = line.split()
        if what == "start":
            starts[name] = int(when)
        else:
            runs[name] = (starts[name], int(when))
    return runs


def test_twenty_tasks_under_a_cap_of_three_run_three_at_most_in_priority_order(
    start_test_operator: StartOperator, tasks: Tasks, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    # Priorities are a shuffle of 0..19, so creation order is not priority order.
    priorities = [(7 * i) % 20 for i in range(20)]
    for index, priority in enumerate(priorities):
        tasks.create(
            agenttask(
                f"task-{index:02d}",
                priority=priority,
                inputs={"FAKE_SLEEP": "1"},
                runner={"env": [{"name": "FAKE_LOG", "value": str(log)}]},
            )
        )
    start_test_operator("--max-running", str(CAP))

    for index in range(20):
        wait_for(partial(tasks.finished, f"task-{index:02d}"), 120, f"task-{index:02d}")

    runs = _runs(log)
    assert len(runs) == 20
    edges = sorted(
        [(start, 1) for start, _ in runs.values()] + [(end, -1) for _, end in runs.values()]
    )
    running = peak = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += change
        peak = max(peak, running)
    assert peak <= CAP
    # Started in priority order, give or take the order within one admission wave of CAP.
    rank = {
        f"task-{i:02d}": sorted(priorities, reverse=True).index(p) for i, p in enumerate(priorities)
    }
    started = sorted(runs, key=lambda name: runs[name][0])
    for position, name in enumerate(started):
        assert rank[name] < position + CAP, (position, name, [rank[n] for n in started])
    for name in started:
        assert tasks.status(name)["phase"] == "Succeeded"


def test_operator_killed_mid_run_and_restarted_makes_no_second_job(
    start_test_operator: StartOperator, tasks: Tasks
) -> None:
    names = [f"survivor-{i}" for i in range(6)]
    operator = start_test_operator()
    for name in names:
        tasks.create(agenttask(name, inputs={"FAKE_SLEEP": "3"}))
    wait_for(tasks.jobs, 30, "a first Job")
    assert operator.process.popen is not None
    operator.process.popen.send_signal(signal.SIGKILL)
    operator.process.popen.wait(10)

    start_test_operator()

    for name in names:
        finished = wait_for(partial(tasks.finished, name), 60, f"{name} to finish")
        assert finished["reason"] == "Completed"
        assert tasks.status(name)["attempt"] == 1
        assert len(tasks.jobs(name)) == 1
