"""A release names one version everywhere: package, chart, default runner image, manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opspawn.dev.versions import REPOSITORY, SHIPPED, declared_versions, disagreements
from opspawn.operator.cli import DEFAULT_RUNNER_IMAGE

VERSION = declared_versions()["pyproject.toml project.version"]


def test_the_repository_agrees_with_itself() -> None:
    assert disagreements() == []


def test_the_operator_runs_runners_of_its_own_release() -> None:
    # The CLI reads the installed package's metadata: a stale editable install shows here.
    default_image = DEFAULT_RUNNER_IMAGE
    assert default_image == f"ghcr.io/opspawn/opspawn:{VERSION}", (
        "reinstall the package (pip install -e .) after changing its version"
    )


@pytest.fixture
def copy_of_release_files(tmp_path: Path) -> Path:
    """The files the check reads, copied, so a test can break them."""
    for name in ("pyproject.toml", *SHIPPED):
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        elif source.is_file():
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def test_a_chart_bumped_alone_is_caught(copy_of_release_files: Path) -> None:
    chart = copy_of_release_files / "charts/opspawn/Chart.yaml"
    chart.write_text(chart.read_text().replace(f'appVersion: "{VERSION}"', 'appVersion: "9.9.9"'))
    assert disagreements(copy_of_release_files) == [
        f"charts/opspawn/Chart.yaml appVersion is '9.9.9', the package version is '{VERSION}'"
    ]


def test_a_moving_tag_in_a_doc_is_caught(copy_of_release_files: Path) -> None:
    (copy_of_release_files / "docs/try-it.md").write_text(
        "kubectl run x --image=ghcr.io/opspawn/opspawn:latest\n"
    )
    problems = disagreements(copy_of_release_files)
    assert "docs/try-it.md names the moving tag ghcr.io/opspawn/opspawn:latest" in problems


def test_a_stale_image_tag_in_the_manifests_is_caught(copy_of_release_files: Path) -> None:
    (copy_of_release_files / "manifests/old.yaml").write_text(
        "image: ghcr.io/opspawn/opspawn:0.0.9\n"
    )
    assert disagreements(copy_of_release_files) == [
        f"manifests/old.yaml names ghcr.io/opspawn/opspawn:0.0.9, not ghcr.io/opspawn/opspawn:{VERSION}"
    ]


def test_a_release_tag_must_be_the_version() -> None:
    assert disagreements(tag=f"v{VERSION}") == []
    assert disagreements(tag="v9.9.9") == [f"the git tag 'v9.9.9' is not v{VERSION}"]
