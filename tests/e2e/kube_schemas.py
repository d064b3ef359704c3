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


def _strict(node: Any) -> Any:
    """A copy of `node` with `additionalProperties: false` on every object that declares its
    properties (and does not preserve unknown fields), and int-or-string made a union."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
        return dict(_INT_OR_STRING)
    copy = {key: _strict(value) for key, value in node.items()}
    if (
        "properties" in copy
        and "additionalProperties" not in copy
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        copy["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        copy.pop("anyOf", None)
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
                "definitions": _strict(_closure(definitions, name)),
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
