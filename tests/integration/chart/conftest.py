"""The chart's values combinations: the defaults and each documented `charts/opspawn/ci/*-values.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from opspawn.dev.helm import CHART

VALUES_FILES = {
    path.name.removesuffix("-values.yaml"): path
    for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    **{name: yaml.safe_load(path.read_text()) for name, path in VALUES_FILES.items()},
}


def values_file(name: str) -> Path | None:
    return VALUES_FILES.get(name)
