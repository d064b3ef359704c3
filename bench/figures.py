"""What every benchmark script shares: one JSON line per figure, and the results file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def emit(figures: list[dict[str, Any]], figure: dict[str, Any]) -> None:
    """Print `figure` as one JSON line and keep it for the results file."""
    print(json.dumps(figure), flush=True)
    figures.append(figure)


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
