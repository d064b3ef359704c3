"""What every benchmark script shares: one JSON line per figure, and the results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def emit(figures: list[dict[str, Any]], figure: dict[str, Any]) -> None:
    """Print `figure` as one JSON line and keep it for the results file."""
    print(json.dumps(figure), flush=True)
    figures.append(figure)


def median_of_runs(
    runs: list[dict[str, Any]], meets_target: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """One figure from several runs of it. Every number is its median over the runs (a ratio is
    the median of the per-run ratios, each against the limit measured in its own run);
    `meets_target` judges the medians; `each_run` keeps every run's numbers that varied."""
    first = runs[0]
    numbers = [
        k for k, v in first.items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    varying = [k for k in numbers if len({run[k] for run in runs}) > 1]
    figure = {
        key: round(statistics.median(run[key] for run in runs), 3) if key in varying else value
        for key, value in first.items()
    }
    figure["runs"] = len(runs)
    if varying:
        figure["each_run"] = {key: [run[key] for run in runs] for key in varying}
    figure["meets_target"] = meets_target(figure)
    return figure


def write_results(name: str, figures: list[dict[str, Any]], how: str) -> Path:
    """bench/results/<name>.json: the machine, how the figures were taken, the figures."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    path.write_text(
        json.dumps({"machine": machine, "how": how, "figures": figures}, indent=2) + "\n"
    )
    return path
