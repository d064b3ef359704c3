"""A sample value that fits a JSON Schema, for scripted tool arguments and structured answers.

Covers what tool and output schemas use in practice: types, properties, items, enum, const,
anyOf/oneOf/allOf (first branch), local `$ref`s, string formats, length and range bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_STRING_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_MAX_DEPTH = 16


def sample_instance(schema: Mapping[str, Any]) -> Any:
    """A value valid against `schema` (best effort for `pattern` and exotic keywords)."""
    return _sample(schema, root=schema, depth=0)


def sample_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Tool-call arguments valid against an object `schema`: its required properties only, as
    a caller would leave optional ones out (a sample of an optional time zone is no zone)."""
    schema = _resolve(schema, schema)
    properties = schema.get("properties") or {}
    return {
        name: _sample(properties[name], root=schema, depth=1)
        for name in schema.get("required") or []
        if name in properties
    }


def _sample(schema: Mapping[str, Any], *, root: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for keyword in ("anyOf", "oneOf", "allOf"):
        if schema.get(keyword):
            return _sample(schema[keyword][0], root=root, depth=depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _sample(sub, root=root, depth=depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items") or {}
        return [_sample(items, root=root, depth=depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/...`); other references are left alone."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    target: Any = root
    for key in ref.lstrip("#/").split("/"):
        if not key:
            continue
        if not isinstance(target, Mapping) or key not in target:
            return schema
        target = target[key]
    return target if isinstance(target, Mapping) else schema


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    value: float = 1
    if "minimum" in schema:
        value = max(value, schema["minimum"])
    if "exclusiveMinimum" in schema:
        value = max(value, schema["exclusiveMinimum"] + 1)
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    if "exclusiveMaximum" in schema:
        value = min(value, schema["exclusiveMaximum"] - 1)
    return int(value) if integer else float(value)


def _string(schema: Mapping[str, Any]) -> str:
    text = _STRING_FORMATS.get(str(schema.get("format")), "example")
    min_length = int(schema.get("minLength", 0))
    if len(text) < min_length:
        text += "x" * (min_length - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text
