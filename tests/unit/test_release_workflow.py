"""The release workflow never runs here: actionlint checks it, and these tests check what it
publishes and that nothing is pushed before the tag and the versions agree."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from opspawn.dev.tools import HELM, tool_binary
from opspawn.dev.versions import REPOSITORY

WORKFLOWS = REPOSITORY / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_binary("actionlint")), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPOSITORY,
        timeout=120,
    )


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(RELEASE.read_text())
    steps: list[dict[str, Any]] = workflow["jobs"]["release"]["steps"]
    return steps


def test_actionlint_accepts_every_workflow() -> None:
    workflows = sorted(WORKFLOWS.glob("*.y*ml"))
    assert RELEASE in workflows
    checked = _actionlint(*workflows)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_actionlint_would_catch_a_broken_release(tmp_path: Path) -> None:
    """The check is live: a step output that no step sets is refused."""
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(RELEASE.read_text().replace("steps.version.outputs", "steps.versoin.outputs"))
    checked = _actionlint(broken)
    assert checked.returncode == 1
    assert "versoin" in checked.stdout


def test_it_runs_on_version_tags_only() -> None:
    workflow = yaml.safe_load(RELEASE.read_text())
    # PyYAML reads the key `on` as True (YAML 1.1).
    assert workflow[True] == {"push": {"tags": ["v*"]}}


def test_nothing_is_pushed_before_the_tag_and_the_versions_agree() -> None:
    steps = _steps()
    check = next(i for i, step in enumerate(steps) if step.get("id") == "version")
    assert '--tag "$GITHUB_REF_NAME"' in steps[check]["run"]
    assert "opspawn.dev.versions" in steps[check]["run"]
    pushes = [
        i
        for i, step in enumerate(steps)
        if "build-push-action" in step.get("uses", "") or "helm push" in step.get("run", "")
    ]
    assert len(pushes) == 2
    assert all(i > check for i in pushes)


def test_the_image_is_published_under_the_checked_version_only() -> None:
    build = next(step for step in _steps() if "build-push-action" in step.get("uses", ""))
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ steps.version.outputs.version }}"
    workflow = yaml.safe_load(RELEASE.read_text())
    assert workflow["env"]["IMAGE"] == "ghcr.io/opspawn/opspawn"
    assert "latest" not in RELEASE.read_text()


def test_the_chart_is_pushed_by_the_helm_the_tests_use() -> None:
    workflow = yaml.safe_load(RELEASE.read_text())
    assert workflow["env"]["HELM_VERSION"] == HELM.version
