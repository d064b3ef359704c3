"""One version everywhere a release names it, and never a moving tag.

The package version (pyproject.toml) is the release: the chart's `version` and `appVersion`
equal it, and every reference to the published image (`ghcr.io/opspawn/opspawn:<tag>`) in the
chart, manifests/, docs and README carries it as its tag. No file we ship names a `:latest`
image. The release workflow runs `python -m opspawn.dev.versions --tag "$GITHUB_REF_NAME"`,
which also requires the git tag to be `v<version>`; a unit test runs the same check.

A version is plain `X.Y.Z`: the one form on which PEP 440 (the package), SemVer (the chart)
and image tags agree character for character.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[3]
IMAGE_REPOSITORY = "ghcr.io/opspawn/opspawn"
RELEASE_VERSION = re.compile(r"\d+\.\d+\.\d+")
SHIPPED = ("README.md", "Dockerfile", "docs", "charts", "manifests", ".github")
"""What users read or apply: where image references are checked."""
_TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".tpl", ".json", ".txt", ""}
_IMAGE_REFERENCE = re.compile(re.escape(IMAGE_REPOSITORY) + r":([A-Za-z0-9_.-]+)")
_LATEST = re.compile(r"[\w./-]+:latest\b")


def declared_versions(root: Path = REPOSITORY) -> dict[str, str]:
    """Each place that declares the release version -> the version it declares."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((root / "charts/opspawn/Chart.yaml").read_text())
    return {
        "pyproject.toml project.version": str(project["version"]),
        "charts/opspawn/Chart.yaml version": str(chart["version"]),
        "charts/opspawn/Chart.yaml appVersion": str(chart["appVersion"]),
    }


def _shipped_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in SHIPPED:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files.extend(p for p in candidates if p.is_file() and p.suffix in _TEXT_SUFFIXES)
    return files


def disagreements(root: Path = REPOSITORY, tag: str | None = None) -> list[str]:
    """What contradicts the package version (empty when everything agrees)."""
    versions = declared_versions(root)
    version = versions["pyproject.toml project.version"]
    problems = [
        f"{where} is {declared!r}, the package version is {version!r}"
        for where, declared in versions.items()
        if declared != version
    ]
    if not RELEASE_VERSION.fullmatch(version):
        problems.append(f"the package version {version!r} is not of the form X.Y.Z")
    if tag is not None and tag != f"v{version}":
        problems.append(f"the git tag {tag!r} is not v{version}")
    for path in _shipped_files(root):
        text = path.read_text(errors="replace")
        where = path.relative_to(root)
        for match in _IMAGE_REFERENCE.finditer(text):
            if match[1] != version:
                problems.append(f"{where} names {match[0]}, not {IMAGE_REPOSITORY}:{version}")
        problems.extend(f"{where} names the moving tag {m[0]}" for m in _LATEST.finditer(text))
    return problems


def main(argv: list[str] | None = None) -> None:
    """Print the release version, or every disagreement and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m opspawn.dev.versions", description=__doc__)
    parser.add_argument("--tag", help="the git tag being released (must be v<version>)")
    arguments = parser.parse_args(argv)
    problems = disagreements(tag=arguments.tag)
    if problems:
        print("\n".join(f"version disagreement: {problem}" for problem in problems))
        sys.exit(1)
    print(declared_versions()["pyproject.toml project.version"])


if __name__ == "__main__":
    main()
