"""The CRD in crds/ is what the models generate, and it is a schema a platform team can trust."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from opspawn.api.agenttask import (
    NO_CONTROL_CHARACTERS,
    SPEC_MAX_BYTES,
    SPEC_TEXT_MAX_BYTES,
    AgentTask,
)
from opspawn.api.crd import agenttask_crd, render_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "agenttasks.opspawn.io.yaml"
ANNOTATION_CAP = 256 * 1024
MAP_KEY_BOUND = 316  # the longest key any map of the spec admits (label keys)


def _schema(part: str) -> dict[str, Any]:
    version = agenttask_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"][part]
    return schema


def test_crds_directory_and_chart_are_up_to_date() -> None:
    generated = render_yaml(agenttask_crd())
    for path in (CRD_PATH, ROOT / "charts" / "opspawn" / "crds" / CRD_PATH.name):
        assert path.read_text() == generated, (
            f"{path.relative_to(ROOT)} is stale: run `make manifests` and commit the result"
        )


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_every_field_is_described_for_kubectl_explain() -> None:
    for part in ("spec", "status"):
        for path, node in _walk(_schema(part), part):
            if path.endswith(("[]", "{}")):
                continue
            assert node.get("description"), f"{path} has no description"


def test_schema_is_structural() -> None:
    text = CRD_PATH.read_text()
    assert "$ref" not in text
    for part in ("spec", "status"):
        for path, node in _walk(_schema(part), part):
            if node.get("x-kubernetes-int-or-string"):
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
                continue
            assert "type" in node, f"{path} has no type"
            assert "anyOf" not in node and "oneOf" not in node, f"{path} is not structural"


def _max_json_size(node: dict[str, Any], path: str) -> int:
    """Largest JSON serialisation (ASCII text) that this schema admits; fails on unbounded."""
    if node.get("x-kubernetes-int-or-string"):
        return 64
    kind = node.get("type")
    if kind == "string":
        if "enum" in node:
            return max(len(json.dumps(v)) for v in node["enum"])
        assert "maxLength" in node, f"{path} is an unbounded string"
        # Free text may need escaping (two characters each); other patterned strings never do.
        escape = 1 if node.get("pattern", NO_CONTROL_CHARACTERS) != NO_CONTROL_CHARACTERS else 2
        return int(node["maxLength"]) * escape + 2
    if kind in ("integer", "number"):
        return 24
    if kind == "boolean":
        return 5
    if kind == "array":
        assert "maxItems" in node, f"{path} is an unbounded list"
        return int(node["maxItems"]) * (_max_json_size(node["items"], f"{path}[]") + 1) + 2
    if kind == "object" and "properties" in node:
        return 2 + sum(
            len(name) + 4 + _max_json_size(child, f"{path}.{name}")
            for name, child in node["properties"].items()
        )
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        assert "maxProperties" in node, f"{path} is an unbounded map"
        value = _max_json_size(node["additionalProperties"], f"{path}{{}}")
        return 2 + int(node["maxProperties"]) * (MAP_KEY_BOUND + 4 + value)
    raise AssertionError(f"{path}: cannot bound a node of type {kind}")


def test_largest_admissible_spec_fits_well_within_the_annotation_cap() -> None:
    """kopf keeps a copy of the spec in an annotation; all annotations share 256 KiB."""
    largest = _max_json_size(_schema("spec"), "spec")
    assert largest < ANNOTATION_CAP * 0.75, f"a spec may serialise to {largest} bytes"


def test_free_text_at_its_byte_budget_leaves_the_rest_of_the_spec_room_in_one_variable() -> None:
    """The spec reaches the runner as one environment variable: JSON at most doubles the free
    text the CRD admits (no control characters), and the rest of a realistic spec needs far
    less than what remains; the operator refuses whatever still does not fit."""
    spec = _schema("spec")
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any(rule.endswith(f"<= {SPEC_TEXT_MAX_BYTES}") for rule in rules)
    for name in ("goal", "context"):
        assert spec["properties"][name]["pattern"] == NO_CONTROL_CHARACTERS
    assert spec["properties"]["inputs"]["additionalProperties"]["pattern"] == NO_CONTROL_CHARACTERS
    assert 2 * SPEC_TEXT_MAX_BYTES <= SPEC_MAX_BYTES - 24 * 1024


def test_examples_parse_with_the_models() -> None:
    examples = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
    assert len(examples) >= 4
    for example in examples:
        for document in yaml.safe_load_all(example.read_text()):
            if document and document.get("kind") == "AgentTask":
                AgentTask.model_validate(document)
