"""manifests/ (install.yaml, kustomize base and overlays), the chart's copy of the operator's
rules and the values reference are what `make manifests` makes of the chart today."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opspawn.dev.binaries import control_plane_binaries
from opspawn.dev.manifests import (
    OVERLAYS,
    RULES_FILE,
    generated_files,
    installation,
    object_key,
    operator_rules_yaml,
)

ROOT = Path(__file__).resolve().parents[3]
STALE = "is stale: run `make manifests` and commit the result"


def test_chart_rules_file_is_the_operator_rules() -> None:
    assert RULES_FILE.read_text() == operator_rules_yaml(), f"{RULES_FILE.name} {STALE}"


def test_generated_files_match_the_chart() -> None:
    expected = generated_files()
    for path, text in expected.items():
        assert (ROOT / path).exists(), f"{path} is missing: run `make manifests`"
        assert (ROOT / path).read_text() == text, f"{path} {STALE}"
    on_disk = {
        path.relative_to(ROOT)
        for directory in ("manifests/base", "manifests/overlays")
        for path in (ROOT / directory).glob("**/*.yaml")
    }
    assert on_disk <= set(expected), f"not generated any more: {sorted(on_disk - set(expected))}"


def _kustomize(directory: Path) -> dict[tuple[str, str, str, str], Any]:
    built = subprocess.run(
        [str(control_plane_binaries()["kubectl"]), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return {object_key(obj): obj for obj in yaml.safe_load_all(built.stdout) if obj}


@pytest.mark.parametrize("overlay", [None, *OVERLAYS], ids=lambda o: o.name if o else "base")
def test_kustomize_builds_what_the_chart_renders(overlay: Any) -> None:
    """`kubectl kustomize` of the base and of each overlay yields, object for object, the
    chart rendered with the overlay's values."""
    if overlay is None:
        directory, expected = ROOT / "manifests" / "base", installation({})
    else:
        directory = ROOT / "manifests" / "overlays" / overlay.name
        expected = installation(overlay.values, overlay.namespaces)
    built = _kustomize(directory)
    assert built == {object_key(obj): obj for obj in expected}
