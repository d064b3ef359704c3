"""Structured output: the final answer must be JSON matching spec.outputSchema.

The schema is offered to the provider (where it can enforce it) and the answer is always
validated here. An answer that is not JSON, or does not match, gets a repair request: the
validation error goes back to the model, which answers again, at most
spec.limits.maxOutputRepairs times.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from opspawn.api.output_schema import OutputSchemaError, parse_output_schema

__all__ = ["Checked", "OutputContract", "OutputSchemaError"]

_FENCED = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)
"""An answer wrapped in one Markdown code fence, as models like to write JSON."""


@dataclass(frozen=True)
class Checked:
    """An answer checked against the schema: its JSON value, or why it does not fit."""

    value: Any = None
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None


class OutputContract:
    """The JSON Schema the final answer must match."""

    def __init__(self, schema: dict[str, Any]) -> None:
        """`schema` as `parse_output_schema` returns it (checked already)."""
        self.schema = schema
        self._validator = validators.validator_for(schema, default=Draft202012Validator)(schema)

    @classmethod
    def parse(cls, text: str) -> OutputContract:
        """The contract of spec.outputSchema (JSON text); OutputSchemaError if unusable."""
        return cls(parse_output_schema(text))

    def check(self, answer: str) -> Checked:
        """The answer's JSON value if it matches the schema, else what is wrong with it."""
        fenced = _FENCED.match(answer)
        text = fenced.group("body") if fenced else answer
        try:
            value = json.loads(text)
        except ValueError as error:
            return Checked(problem=f"the answer is not JSON ({error})")
        except RecursionError:
            return Checked(problem="the answer is nested too deeply to be read")
        try:
            invalid = best_match(self._validator.iter_errors(value))
        except RecursionError:  # e.g. {"$ref": "#"}: the schema refers to itself without end
            return Checked(problem="the output schema refers to itself without end")
        if invalid is None:
            return Checked(value=value)
        where = "/".join(str(part) for part in invalid.absolute_path)
        at = f" at /{where}" if where else ""
        return Checked(problem=f"the answer does not match the schema{at}: {invalid.message}")

    def repair_request(self, problem: str) -> str:
        """What the model is told when its answer did not fit."""
        return (
            f"Your final answer was rejected: {problem}. Reply again with only a JSON value "
            "that matches the output schema, and no other text."
        )
