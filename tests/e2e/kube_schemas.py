"""JSON schemas for kubeconform, made offline.

kubeconform normally downloads the built-in kinds' schemas from GitHub, which the test machines
cannot reach. The same schemas are derived here from what is at hand: built-in kinds from the
OpenAPI v2 document of the stack's own kube-apiserver (the Kubernetes version the project
targets), the AgentTask from the CRD in crds/. Strict like kubeconform's `-strict` schemas: an
object with declared properties admits no others.

Files are named like kubeconform's default layout, `<kind>-<group prefix>-<version>.json`
(`{{ .ResourceKind }}{{ .KindSuffix }}.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}
_REF_PREFIX = "#/definitions/"


def file_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def _strict(schema: Any) -> Any:
    """A copy of `schema` with `additionalProperties: false` on every object that declares its
    properties (and does not preserve unknown fields), and int-or-string made a union."""
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string") is True or schema.get("format") == "int-or-string":
        return dict(_INT_OR_STRING)
    copy = dict(schema)
    if isinstance(schema.get("properties"), dict):
        copy["properties"] = {name: _strict(node) for name, node in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            copy["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            copy[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            copy[key] = [_strict(node) for node in schema[key]]
    return copy


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(_REF_PREFIX):
            found.add(reference.removeprefix(_REF_PREFIX))
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


def _closure(definitions: dict[str, Any], root: str) -> dict[str, Any]:
    wanted, seen = [root], set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set[str] = set()
        _references(definitions[name], found)
        wanted += sorted(found - seen)
    return {name: definitions[name] for name in sorted(seen)}


def builtin_schemas(
    openapi_v2: dict[str, Any], wanted: set[tuple[str, str]], directory: Path
) -> set[tuple[str, str]]:
    """Write a schema for each (apiVersion, kind) of `wanted` the apiserver serves; those
    written."""
    definitions = dict(openapi_v2["definitions"])
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = _INT_OR_STRING
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = _QUANTITY
    written: set[tuple[str, str]] = set()
    for name, definition in openapi_v2["definitions"].items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            if (api_version, kind) not in wanted:
                continue
            schema = {
                "$ref": f"{_REF_PREFIX}{name}",
                "definitions": {
                    ref: _strict(node) for ref, node in _closure(definitions, name).items()
                },
            }
            (directory / file_name(api_version, kind)).write_text(json.dumps(schema))
            written.add((api_version, kind))
    return written


def crd_schemas(crd: dict[str, Any], directory: Path) -> set[tuple[str, str]]:
    """Write the schema of each served version of `crd`; the (apiVersion, kind) pairs."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written: set[tuple[str, str]] = set()
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        api_version = f"{group}/{version['name']}"
        schema = _strict(version["schema"]["openAPIV3Schema"])
        (directory / file_name(api_version, kind)).write_text(json.dumps(schema))
        written.add((api_version, kind))
    return written
