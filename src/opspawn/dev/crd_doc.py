"""The AgentTask reference (docs/crd-reference.md), from the CRD generated from the API models.

Every field path of the served schema is listed with its type, whether it is required, its
default, its constraints and its description, and every CEL rule with its message, so the
reference is complete by construction; `make manifests` writes it and a test keeps it current.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opspawn.api.crd import agenttask_crd
from opspawn.dev.markdown import cell, code

CRD_REFERENCE = Path("docs/crd-reference.md")

Schema = dict[str, Any]


@dataclass(frozen=True)
class Field:
    path: str
    schema: Schema
    required: bool


def _type(schema: Schema) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = schema.get("type", "")
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type(schema['additionalProperties'])}"
    if kind == "object" and schema.get("x-kubernetes-preserve-unknown-fields"):
        return "object (any fields)"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def _bound(schema: Schema, low: str, high: str, what: str) -> list[str]:
    if low in schema and high in schema:
        if schema[low] == schema[high]:
            return [f"{what} {schema[low]}"]
        return [f"{what} {schema[low]} to {schema[high]}"]
    if low in schema:
        return [f"{what} ≥ {schema[low]}"]
    if high in schema:
        return [f"{what} ≤ {schema[high]}"]
    return []


def constraints(schema: Schema) -> str:
    found: list[str] = []
    if "enum" in schema:
        found.append("one of " + ", ".join(code(str(value)) for value in schema["enum"]))
    if "minimum" in schema:
        found.append(f"{'>' if schema.get('exclusiveMinimum') else '≥'} {schema['minimum']}")
    if "maximum" in schema:
        found.append(f"{'<' if schema.get('exclusiveMaximum') else '≤'} {schema['maximum']}")
    found += _bound(schema, "minLength", "maxLength", "length")
    found += _bound(schema, "minItems", "maxItems", "items")
    found += _bound(schema, "minProperties", "maxProperties", "entries")
    if "pattern" in schema:
        found.append(f"pattern {code(schema['pattern'])}")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = ", ".join(code(key) for key in schema.get("x-kubernetes-list-map-keys", []))
        found.append(f"one item per {keys}")
    elif list_type == "set":
        found.append("items unique")
    return "; ".join(found)


def fields(schema: Schema, path: str, required: bool = False) -> list[Field]:
    """`schema` and everything under it, depth first in declaration order."""
    found = [Field(path, schema, required)]
    mandatory = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        found += fields(child, f"{path}.{name}", name in mandatory)
    for inner, suffix in ((schema.get("additionalProperties"), ".*"), (schema.get("items"), "[]")):
        if isinstance(inner, dict):
            below = fields(inner, path + suffix)
            # A value or item whose type says it all is not a row of its own.
            found += below if set(inner) - {"type"} - {"properties"} else below[1:]
    return found


def _field_table(found: list[Field]) -> list[str]:
    rows = [
        "| field | type | required | default | constraints | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for item in found:
        default = code(json.dumps(item.schema["default"])) if "default" in item.schema else ""
        rows.append(
            f"| `{item.path}` | {_type(item.schema)} | {'yes' if item.required else ''}"
            f" | {default} | {constraints(item.schema)}"
            f" | {cell(item.schema.get('description', ''))} |"
        )
    return rows


def _rule_table(found: list[Field]) -> list[str]:
    rows = ["| on | message | rule |", "| --- | --- | --- |"]
    for item in found:
        for rule in item.schema.get("x-kubernetes-validations", []):
            where = item.path + rule.get("fieldPath", "")
            rows.append(f"| `{where}` | {cell(rule.get('message', ''))} | {code(rule['rule'])} |")
    return rows


def _columns(version: Schema) -> list[str]:
    rows = ["| column | JSONPath | shown |", "| --- | --- | --- |"]
    for column in version.get("additionalPrinterColumns", []):
        shown = "with `-o wide`" if column.get("priority", 0) > 0 else "always"
        rows.append(f"| {column['name']} | {code(column['jsonPath'])} | {shown} |")
    return rows


def crd_reference(crd: Schema | None = None) -> str:
    crd = agenttask_crd() if crd is None else crd
    spec = crd["spec"]
    (version,) = spec["versions"]
    names = spec["names"]
    root = version["schema"]["openAPIV3Schema"]["properties"]
    short_names = "".join(f", short name `{short}`" for short in names.get("shortNames", []))
    lines = [
        f"# {names['kind']} reference",
        "",
        f"Generated by `make manifests` from the CRD (`crds/{names['plural']}.{spec['group']}"
        ".yaml`, itself generated from the API models in `api/opspawn/api/`); do not edit.",
        f"`kubectl explain {names['singular']}.spec` shows the same descriptions.",
        "",
        f"- API: `{spec['group']}/{version['name']}`, kind `{names['kind']}`, "
        f"{spec['scope'].lower()}; plural `{names['plural']}`{short_names}.",
        "- The status is a subresource: users write `spec`, the operator writes `status`.",
        "- Unknown fields are refused by `kubectl apply` (strict field validation) and pruned "
        "otherwise.",
        "- `a.*` is any key of the map `a`; `a[]` is any item of the list `a`.",
        "",
        f"## Columns of `kubectl get {names['plural']}`",
        "",
        *_columns(version),
    ]
    for section in ("spec", "status"):
        found = fields(root[section], section, required=True)
        lines += ["", f"## {section}", ""]
        if "description" in root[section]:
            lines += [cell(root[section]["description"]), ""]
        lines += _field_table(found[1:])
        rules = _rule_table(found)
        if len(rules) > 2:
            lines += [
                "",
                f"### Validation rules of {section} (CEL)",
                "",
                "Checked by the apiserver at `kubectl apply`; the message names the field.",
                "",
                *rules,
            ]
    return "\n".join(lines) + "\n"
