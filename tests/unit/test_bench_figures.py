"""Benchmark figures over several runs: medians, the spread, and the target judged on them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from figures import median_of_runs  # bench/ holds scripts, not a package


def test_numbers_are_medians_and_the_target_is_judged_on_them() -> None:
    runs = [
        {"figure": "launch", "tasks": 200, "rate": 30.0, "ratio": 0.2, "target": 35.0},
        {"figure": "launch", "tasks": 200, "rate": 50.0, "ratio": 0.4, "target": 35.0},
        {"figure": "launch", "tasks": 200, "rate": 40.0, "ratio": 0.3, "target": 35.0},
    ]

    figure = median_of_runs(runs, lambda f: f["rate"] >= f["target"])

    assert figure["rate"] == 40.0
    assert figure["ratio"] == 0.3
    assert figure["tasks"] == 200
    assert figure["runs"] == 3
    assert figure["each_run"] == {"rate": [30.0, 50.0, 40.0], "ratio": [0.2, 0.4, 0.3]}
    assert figure["meets_target"] is True


def test_a_single_run_is_its_own_median() -> None:
    figure = median_of_runs([{"figure": "scale", "peak_rss_mb": 260}], lambda f: False)

    assert figure == {"figure": "scale", "peak_rss_mb": 260, "runs": 1, "meets_target": False}
