"""Scripts of the fake model server: what the "model" answers, turn by turn.

A script is a list of turns. The turn a request gets is chosen by the conversation it sends:
the number of assistant turns already in it (0 for the first call, 1 after one model answer
…), so concurrent conversations and retried requests get consistent answers; past the end
of the script the last turn answers again. The format is documented in docs/mock-model.md.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

FIRST_OFFERED_TOOL = "*"
"""Tool-call name meaning "the first tool the request offers"."""


class ScriptModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScriptedCall(ScriptModel):
    """A tool call the model makes."""

    name: str = Field(min_length=1)
    """Tool name, or "*" for the first tool the request offers."""
    arguments: dict[str, Any] | None = None
    """Arguments; when absent, a sample that fits the tool's parameter schema."""
    id: str | None = None
    """Call id; when absent the server makes one up (Gemini: no id at all)."""
    signature: str | None = None
    """Gemini thought signature (base64) for this call; the first call of a turn gets one made
    up when absent."""


class Failure(ScriptModel):
    """An HTTP error served instead of the turn's answer, once."""

    status: int = Field(ge=400, le=599)
    retry_after: float | str | None = None
    """Retry-After header: seconds, or an HTTP-date string."""
    message: str = "scripted failure"


class ScriptedUsage(ScriptModel):
    """Token counts to report, in neutral terms (input includes cached, output includes
    reasoning); each wire format splits them its own way."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)


class Turn(ScriptModel):
    """One answer of the model."""

    text: str | None = None
    """Answer text. When the request asks for structured output, a sample of the requested
    schema is sent instead, so that text turns also serve structured tasks."""
    json_value: Any = Field(default=None, alias="json")
    """Structured answer: sent as JSON text."""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    """Tool calls, several in one turn allowed."""
    thinking: str | None = None
    """Reasoning sent ahead of the answer (Anthropic thinking block, Gemini thought part)."""
    delay: float = Field(default=0.0, ge=0)
    """Seconds to wait before answering (slow replies)."""
    fail: list[Failure] = Field(default_factory=list)
    """Errors served, one per request, before this turn answers."""
    usage: ScriptedUsage | None = None

    @model_validator(mode="after")
    def _answers_something(self) -> Self:
        if self.text is None and self.json_value is None and not self.tool_calls:
            raise ValueError("a turn needs text, json or tool_calls")
        return self

    @property
    def needs_offered_tool(self) -> bool:
        """Only calls "the first offered tool": meaningless when no tool is offered."""
        return bool(self.tool_calls) and all(
            call.name == FIRST_OFFERED_TOOL for call in self.tool_calls
        )


class Script(ScriptModel):
    turns: list[Turn] = Field(min_length=1)

    def turn_for(self, assistant_turns: int, *, tools_offered: bool) -> tuple[int, Turn]:
        """The turn (and its index in the script) that answers a conversation with
        `assistant_turns` model answers so far. Turns that only call "*" are skipped when the
        request offers no tools."""
        usable = [
            (index, turn)
            for index, turn in enumerate(self.turns)
            if tools_offered or not turn.needs_offered_tool
        ] or list(enumerate(self.turns))
        return usable[min(assistant_turns, len(usable) - 1)]


def load_script(path: str | Path) -> Script:
    """A script from a YAML or JSON file (JSON when the name ends in .json)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return Script.model_validate(data)


def default_script() -> Script:
    """The dev stack's mock model: calls the first tool offered, then answers."""
    text = resources.files("opspawn.fakes").joinpath("default_script.yaml").read_text("utf-8")
    return Script.model_validate(yaml.safe_load(text))
