"""The fake server's script logic, without HTTP."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from opspawn.fakes import Script, default_script
from opspawn.fakes.schema_sample import sample_arguments, sample_instance

TOOL_AND_ANSWER = Script.model_validate(
    {"turns": [{"tool_calls": [{"name": "*"}]}, {"text": "one"}, {"text": "two"}]}
)


@pytest.mark.parametrize(
    ("assistant_turns", "tools_offered", "index"),
    [(0, True, 0), (1, True, 1), (2, True, 2), (9, True, 2), (0, False, 1), (1, False, 2)],
)
def test_turns_are_chosen_by_conversation_length(
    assistant_turns: int, tools_offered: bool, index: int
) -> None:
    chosen, turn = TOOL_AND_ANSWER.turn_for(assistant_turns, tools_offered=tools_offered)
    assert chosen == index
    assert turn is TOOL_AND_ANSWER.turns[index]


def test_turns_must_answer_something() -> None:
    with pytest.raises(ValidationError, match="text, json or tool_calls"):
        Script.model_validate({"turns": [{"delay": 1}]})
    with pytest.raises(ValidationError):
        Script.model_validate({"turns": [{"text": "x", "typo": 1}]})
    with pytest.raises(ValidationError):
        Script.model_validate({"turns": []})


def test_default_script_is_valid() -> None:
    assert default_script().turns[0].needs_offered_tool


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "format": "date-time"}}},
        {"type": "array", "items": {"type": "integer", "minimum": 5}, "minItems": 2},
        {"type": ["null", "number"], "exclusiveMaximum": 0},
        {"enum": ["x", "y"]},
        {"const": 3},
        {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        {"type": "string", "minLength": 12, "maxLength": 12},
        {
            "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
            "required": ["items"],
        },
        {},
    ],
)
def test_schema_samples_are_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(sample_instance(schema), schema)


def test_sampled_tool_arguments_leave_optional_properties_out() -> None:
    schema = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "timezone": {"type": "string", "pattern": "^[A-Z][a-z]+/[A-Z][a-z]+$"},
        },
        "required": ["url"],
    }
    arguments = sample_arguments(schema)
    assert arguments == {"url": "https://example.com/"}
    jsonschema.validate(arguments, schema)
