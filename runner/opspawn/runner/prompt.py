"""The opening of every conversation: the system prompt and the goal message.

User text (goal, context, inputs) is passed to the model literally: nothing here expands
`$(VAR)`, `${VAR}` or templates, so a goal can never pull a value out of the environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opspawn.api.agenttask import AgentTaskSpec
from opspawn.runner.model.types import Message

SYSTEM_PROMPT = (
    "You are an autonomous agent carrying out a task for a platform user. Work towards the "
    "goal step by step, calling the tools you are offered when they help; a tool result "
    "marked as an error tells you what went wrong, so adjust rather than repeat the same "
    "call. When the goal is reached, reply with the final result and no tool calls."
)
STRUCTURED_OUTPUT_PROMPT = (
    "Your final answer must be a single JSON value matching this JSON Schema, with no other "
    "text:\n{schema}"
)


def system_message(output_schema: dict[str, Any] | None) -> Message:
    text = SYSTEM_PROMPT
    if output_schema is not None:
        schema = json.dumps(output_schema, ensure_ascii=False)
        text += "\n\n" + STRUCTURED_OUTPUT_PROMPT.format(schema=schema)
    return Message.system(text)


MEMORIES_HEADER = (
    "Memories recalled from earlier tasks in this namespace (they may be outdated or "
    "irrelevant; trust the goal and tool results over them):"
)


def goal_message(spec: AgentTaskSpec, memories: Sequence[str] = ()) -> Message:
    """The goal, context and inputs, and the long-term memories recalled for the goal."""
    sections = [f"Goal:\n{spec.goal}"]
    if spec.context:
        sections.append(f"Context:\n{spec.context}")
    if spec.inputs:
        lines = "\n".join(f"- {name}: {value}" for name, value in sorted(spec.inputs.items()))
        sections.append(f"Inputs:\n{lines}")
    if memories:
        sections.append(MEMORIES_HEADER + "\n" + "\n".join(memories))
    return Message.user("\n\n".join(sections))
