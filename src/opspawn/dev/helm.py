"""`helm template` of the opspawn chart, as Kubernetes objects (the pinned helm from tools.py)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from opspawn.dev.tools import tool_binary

CHART = Path(__file__).resolve().parents[3] / "charts" / "opspawn"


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm (never raises on failure; the caller checks the return code)."""
    argv = [str(tool_binary("helm")), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def template(
    values: dict[str, Any],
    *,
    release: str = "opspawn",
    namespace: str = "opspawn-system",
    include_crds: bool = False,
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The objects `helm template` renders for `values` (in rendering order)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
        json.dump(values, values_file)
        values_file.flush()
        args = ["template", release, str(chart), "--namespace", namespace, "-f", values_file.name]
        completed = helm(*args, *(["--include-crds"] if include_crds else []))
    if completed.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{completed.stderr}")
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]
