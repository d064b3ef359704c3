"""`kubeconform -strict` over every documented values combination of the chart, the generated
manifests and the example AgentTasks, entirely offline.

Schemas: built-in kinds from the OpenAPI v2 document of the stack's kube-apiserver (v1.36.3, the
version the project targets), AgentTask from crds/ (see kube_schemas.py). The one kind without a
schema here is the prometheus-operator ServiceMonitor (its CRD is not available offline): it is
skipped by name, and the test checks that it is the only resource not validated.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opspawn.dev.helm import template
from opspawn.dev.tools import tool_binary
from tests.conftest import Kubectl
from tests.e2e.kube_schemas import SCHEMA_LOCATION, builtin_schemas, crd_schemas
from tests.integration.chart.conftest import COMBINATIONS

ROOT = Path(__file__).resolve().parents[2]
UNSCHEMED = "ServiceMonitor"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
INSTALLERS = [
    ROOT / "manifests" / "install.yaml",
    ROOT / "manifests" / "overlays" / "namespaced" / "resources.yaml",
]


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _rendered(combination: str) -> str:
    objects = template(COMBINATIONS[combination], include_crds=True)
    return yaml.safe_dump_all(objects)


@pytest.fixture(scope="module")
def schemas(kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schemas")
    wanted = {
        (doc["apiVersion"], doc["kind"])
        for text in [
            *(_rendered(c) for c in COMBINATIONS),
            *(p.read_text() for p in [*INSTALLERS, *EXAMPLES]),
        ]
        for doc in _documents(text)
    }
    openapi = kubectl("get", "--raw", "/openapi/v2")
    assert openapi.returncode == 0, openapi.stderr
    written = builtin_schemas(json.loads(openapi.stdout), wanted, directory)
    written |= crd_schemas(
        yaml.safe_load((ROOT / "crds" / "agenttasks.opspawn.io.yaml").read_text()), directory
    )
    assert {kind for _, kind in wanted - written} <= {UNSCHEMED}, wanted - written
    return directory


def kubeconform(schemas: Path, files: list[Path]) -> list[dict[str, Any]]:
    """Each resource's result (`status`, `msg`) from `kubeconform -strict`, offline."""
    completed = subprocess.run(
        [
            str(tool_binary("kubeconform")),
            "-strict",
            "-schema-location",
            str(schemas / SCHEMA_LOCATION),
            "-skip",
            UNSCHEMED,
            "-output",
            "json",
            "-verbose",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    resources: list[dict[str, Any]] = json.loads(completed.stdout)["resources"]
    return resources


def _assert_all_valid(results: list[dict[str, Any]], expected_count: int) -> None:
    assert len(results) == expected_count
    for result in results:
        if result["kind"] == UNSCHEMED:
            assert result["status"] == "statusSkipped"
        else:
            assert result["status"] == "statusValid", (
                f"{result['kind']} {result['name']}: {result.get('msg')}"
            )


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_chart_renders_valid_objects(combination: str, schemas: Path, tmp_path: Path) -> None:
    rendered = tmp_path / f"{combination}.yaml"
    rendered.write_text(_rendered(combination))
    _assert_all_valid(kubeconform(schemas, [rendered]), len(_documents(rendered.read_text())))


def test_generated_manifests_and_examples_are_valid(schemas: Path) -> None:
    files = [*INSTALLERS, *EXAMPLES]
    count = sum(len(_documents(path.read_text())) for path in files)
    _assert_all_valid(kubeconform(schemas, files), count)


def test_schemas_refuse_unknown_fields_and_wrong_types(schemas: Path, tmp_path: Path) -> None:
    """The validation is not vacuous: a misspelt field or a wrong type is reported."""
    deployment = next(
        doc for doc in _documents(_rendered("default")) if doc["kind"] == "Deployment"
    )
    deployment["spec"]["replicass"] = 1
    task = _documents((ROOT / "manifests" / "examples" / "openai-tools.yaml").read_text())[0]
    task["spec"]["limits"]["maxSteps"] = "ten"
    task["spec"]["goall"] = "typo"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([deployment, task]))
    results = {r["kind"]: r for r in kubeconform(schemas, [broken])}
    assert {kind: r["status"] for kind, r in results.items()} == {
        "Deployment": "statusInvalid",
        "AgentTask": "statusInvalid",
    }
    assert "'replicass' not allowed" in results["Deployment"]["msg"]
    assert "'goall' not allowed" in results["AgentTask"]["msg"]
    assert "/spec/limits/maxSteps" in results["AgentTask"]["msg"]
