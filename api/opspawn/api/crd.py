"""Generate the AgentTask CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema (draft 2020-12); a CRD needs a *structural* OpenAPI v3 schema: no
`$ref`, a `type` on every node, no `anyOf` except for int-or-string, booleans for exclusive
bounds. `structural_schema` does that translation; `agenttask_crd` wraps it with the version,
printer columns, subresources and names.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from opspawn.api import agenttask as at

JsonSchema = dict[str, Any]

_DROPPED_KEYS = frozenset({"title", "$defs"})


def structural_schema(model: type[at.ApiModel]) -> JsonSchema:
    """The model's JSON Schema rewritten as a structural OpenAPI v3 schema."""
    raw: JsonSchema = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, JsonSchema] = raw.get("$defs", {})
    return _rewrite(raw, definitions)


def _resolve(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """Inline a `$ref`, keeping the referring node's own keys (its description wins)."""
    ref = node["$ref"]
    name = ref.rsplit("/", 1)[-1]
    merged = copy.deepcopy(definitions[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _strip_null(node: JsonSchema) -> JsonSchema:
    """`X | None` becomes `anyOf: [X, null]`; in a CRD an optional field is simply omitted."""
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    if len(options) != 1:
        return node
    merged: JsonSchema = copy.deepcopy(options[0])
    merged.update({k: v for k, v in node.items() if k not in ("anyOf", "default")})
    if node.get("default") is not None:
        merged["default"] = node["default"]
    return merged


def _rewrite(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    while "$ref" in node or ("anyOf" in node and not node.get("x-kubernetes-int-or-string")):
        if "$ref" in node:
            node = _resolve(node, definitions)
        else:
            stripped = _strip_null(node)
            if stripped is node:
                raise ValueError(f"cannot express anyOf {node['anyOf']!r} in a structural schema")
            node = stripped
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _rewrite(sub, definitions) for name, sub in value.items()}
        elif key == "items":
            out[key] = _rewrite(value, definitions)
        elif key == "additionalProperties":
            if value is False:
                continue  # unknown fields are pruned, and refused by kubectl's strict validation
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _rewrite(value, definitions)
        elif key == "patternProperties":
            # Structural schemas have no patternProperties: keep the value schema, and check the
            # keys with CEL instead.
            ((pattern, sub),) = value.items()
            out["additionalProperties"] = _rewrite(sub, definitions)
            out.setdefault("x-kubernetes-validations", []).append(
                {
                    "rule": f"self.all(k, k.matches({_cel_string(pattern)}))",
                    "message": f"keys must match {pattern}",
                }
            )
        elif key == "x-kubernetes-validations":
            # Beside the key rules a patternProperties node gets (whichever comes first).
            out[key] = [*value, *out.get(key, [])]
        elif key == "description":
            out[key] = " ".join(str(value).split())
        elif key == "propertyNames":
            continue  # OpenAPI v3 has no propertyNames; patterned keys get CEL above
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


def _cel_string(text: str) -> str:
    """A CEL string literal (raw string, single-quoted)."""
    if "'" in text:
        raise ValueError(f"cannot quote {text!r} as a CEL raw string")
    return f"r'{text}'"


def _printer_columns() -> list[JsonSchema]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
        {"name": "Steps", "type": "integer", "jsonPath": ".status.steps"},
        {"name": "Tokens", "type": "integer", "jsonPath": ".status.usage.totalTokens"},
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason',
        },
        {"name": "Job", "type": "string", "priority": 1, "jsonPath": ".status.jobName"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def agenttask_crd() -> JsonSchema:
    """The complete CustomResourceDefinition for agenttasks.opspawn.io."""
    spec_schema = structural_schema(at.AgentTaskSpec)
    for name in at.IMMUTABLE_FIELDS:
        field_rules = spec_schema["properties"][name].setdefault("x-kubernetes-validations", [])
        field_rules.append(at.immutable_field_rule(name))
    status_schema = structural_schema(at.AgentTaskStatus)
    root: JsonSchema = {
        "type": "object",
        "description": " ".join((at.AgentTask.__doc__ or "").split()),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object: AgentTask."},
            "metadata": at.metadata_schema(),
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{at.PLURAL}.{at.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "opspawn"},
        },
        "spec": {
            "group": at.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": at.KIND,
                "listKind": f"{at.KIND}List",
                "plural": at.PLURAL,
                "singular": at.SINGULAR,
                "shortNames": list(at.SHORT_NAMES),
                "categories": list(at.CATEGORIES),
            },
            "versions": [
                {
                    "name": at.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


def render_yaml(document: JsonSchema) -> str:
    """Stable YAML: keys in insertion order, wide lines, a header saying where it comes from."""
    header = (
        "# Generated from opspawn.api by `make manifests` (opspawn crds generate).\n"
        "# Do not edit by hand: change the models in api/opspawn/api/ instead.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
