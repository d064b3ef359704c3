from __future__ import annotations

import pytest

from opspawn.runner.model import (
    Message,
    Role,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from opspawn.runner.model.react import (
    parse_react,
    render_assistant,
    render_observations,
    system_prompt,
)


def test_actions_become_tool_calls_with_numbered_ids() -> None:
    text = (
        "Thought: I need two things.\n"
        "Action: search\n"
        'Action Input: {"query": "kopf"}\n'
        "Action: current_time\n"
        "Action Input: {}\n"
    )
    message = parse_react(text, turn=3)
    assert message.tool_calls == (
        ToolCall(id="react_3_0", name="search", arguments={"query": "kopf"}),
        ToolCall(id="react_3_1", name="current_time", arguments={}),
    )
    assert message.parts[0] == ThinkingPart(text="I need two things.")
    assert message.text == ""


def test_final_answer_is_the_text() -> None:
    message = parse_react("Thought: done.\nFinal Answer: 42\nand more lines", turn=0)
    assert message.text == "42\nand more lines"
    assert message.tool_calls == ()


def test_a_reply_without_the_protocol_is_the_final_answer() -> None:
    assert parse_react("  Just the answer.  ", turn=0) == Message.assistant("Just the answer.")


def test_invented_observations_and_what_follows_are_ignored() -> None:
    text = "Action: search\nAction Input: {}\nObservation: made up\nFinal Answer: no"
    message = parse_react(text, turn=0)
    assert [c.name for c in message.tool_calls] == ["search"]
    assert message.text == ""


def test_actions_before_a_final_answer_win() -> None:
    message = parse_react("Action: search\nAction Input: {}\nFinal Answer: premature", turn=0)
    assert [c.name for c in message.tool_calls] == ["search"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('{\n  "a": [1, 2]\n}', {"a": [1, 2]}),
        ("", {}),
    ],
)
def test_action_input_forms(arguments: str, expected: dict[str, object]) -> None:
    (call,) = parse_react(f"Action: t\nAction Input: {arguments}", turn=0).tool_calls
    assert call.arguments == expected
    assert call.malformed_arguments is None


def test_action_input_that_is_not_a_json_object_is_kept_as_malformed() -> None:
    (call,) = parse_react("Action: t\nAction Input: the moon", turn=0).tool_calls
    assert call.arguments == {}
    assert call.malformed_arguments == "the moon"


def test_action_without_input_is_a_call_without_arguments() -> None:
    calls = parse_react("Action: first\nAction: second\nAction Input: {}", turn=0).tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("first", {}), ("second", {})]


def test_markers_are_case_insensitive() -> None:
    (call,) = parse_react('action: t\naction input: {"x": 1}', turn=0).tool_calls
    assert call.arguments == {"x": 1}


def test_rendered_turns_parse_back_to_the_same_calls() -> None:
    original = parse_react('Thought: hm\nAction: a\nAction Input: {"k": "v"}', turn=1)
    assert parse_react(render_assistant(original), turn=1) == original
    final = Message.assistant("All done.")
    assert parse_react(render_assistant(final), turn=0) == final


def test_text_next_to_calls_is_rendered_as_thought_and_bad_arguments_verbatim() -> None:
    message = Message(
        role=Role.ASSISTANT,
        parts=(TextPart(text="Checking."), ToolCall(id="c", name="t", malformed_arguments="{oops")),
    )
    assert render_assistant(message) == "Thought: Checking.\nAction: t\nAction Input: {oops"


def test_observations_name_each_call_and_flag_errors() -> None:
    message = Message.tool(
        [
            ToolResult(call_id="react_0_0", name="a", content="fine"),
            ToolResult(call_id="react_0_1", name="b", content="boom", is_error=True),
        ]
    )
    assert render_observations(message) == (
        "Observation (a, call react_0_0): fine\nObservation (b, call react_0_1) ERROR: boom"
    )


def test_system_prompt_lists_tools_and_the_output_schema() -> None:
    tool = ToolSpec(name="calc", description="Adds.", parameters={"type": "object"})
    prompt = system_prompt("Be exact.", [tool], {"type": "integer"})
    assert prompt.startswith("Be exact.\n\n")
    assert '- calc: Adds.\n  arguments (JSON Schema): {"type": "object"}' in prompt
    assert prompt.endswith('matching this JSON Schema: {"type": "integer"}')
    assert system_prompt("", [], None) == ""
