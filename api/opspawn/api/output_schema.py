"""Is `spec.outputSchema` a usable JSON Schema? One answer for the operator and the runner.

The CRD bounds the text (`maxLength`) but CEL cannot parse JSON, so the rest is checked here:
the text is JSON, an object, nested at most `MAX_DEPTH` levels (a deeper document makes
`json.loads` and every JSON Schema validator recurse until Python gives up), and a valid schema
of the draft it names (2020-12 by default). The operator refuses a task whose schema fails with
`Accepted=False` (reason InvalidSpec), before any runner starts.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError

MAX_DEPTH = 32
"""Nesting levels (objects and arrays) an outputSchema may have."""


class OutputSchemaError(ValueError):
    """spec.outputSchema is not a usable JSON Schema object."""


def parse_output_schema(text: str) -> dict[str, Any]:
    """The schema of `text`; OutputSchemaError saying what is wrong with it."""
    try:
        schema = json.loads(text)
    except RecursionError:
        raise OutputSchemaError(f"outputSchema is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise OutputSchemaError(f"outputSchema is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise OutputSchemaError("outputSchema must be a JSON object")
    if nesting_depth(schema) > MAX_DEPTH:
        raise OutputSchemaError(f"outputSchema is nested deeper than {MAX_DEPTH} levels")
    validator_class = validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except SchemaError as error:
        raise OutputSchemaError(
            f"outputSchema is not a valid JSON Schema: {error.message}"
        ) from None
    except RecursionError:
        raise OutputSchemaError("outputSchema refers to itself without end") from None
    return schema


@functools.lru_cache(maxsize=256)
def check_output_schema(text: str) -> None:
    """Raise OutputSchemaError unless `text` is a usable schema; the operator asks on every
    reconcile, so usable texts are remembered."""
    parse_output_schema(text)


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest
