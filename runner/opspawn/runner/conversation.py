"""Short-term memory: the conversation the model sees, kept under a token budget.

The conversation is the system prompt, the goal message, an optional summary of compacted
turns, and the turns since. When its estimated size passes `max_tokens`
(spec.memory.shortTerm.maxTokens), `compact` replaces the oldest turns by an extractive summary
(the first characters of what was said, called and answered, in order) and keeps the most
recent turns within half the budget, so that compaction does not happen on every step.

Turns are compacted in groups that start at an assistant message and hold everything up to the
next one (its tool results, a repair request), so a tool call is never separated from its
result. The most recent group is always kept, whatever its size.

Sizes are estimates (about four characters per token), computed once per message; the provider
reports the real counts in each call's usage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from opspawn.runner.model.types import Message, Role, TextPart, ThinkingPart, ToolCall, ToolResult

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
"""Role markers and framing the providers add to every message."""
EXCERPT_CHARS = 200
"""How much of each text, argument list or result the summary keeps."""
OMITTED_LINE_CHARS = 40
"""Room kept for the "(N earlier lines omitted)" line."""
SUMMARY_HEADER = "Summary of earlier steps (older turns were compacted to save context):"


def estimate_tokens(message: Message) -> int:
    """A rough token count of `message`."""
    chars = 0
    for part in message.parts:
        if isinstance(part, TextPart | ThinkingPart):
            chars += len(part.text)
        elif isinstance(part, ToolCall):
            chars += len(part.name) + len(_arguments_text(part))
        else:
            chars += len(part.name) + len(part.content)
    return chars // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS


@dataclass(frozen=True)
class Compaction:
    """What one compaction did."""

    messages: int
    """Messages replaced by the summary."""
    summary: str
    """The summary that replaced them (previous summary included)."""


class Conversation:
    """The messages of one run, with compaction."""

    def __init__(self, system: Message, goal: Message, *, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._head = (system, goal)
        self._head_tokens = estimate_tokens(system) + estimate_tokens(goal)
        self._summary_lines: list[str] = []
        self._summary: Message | None = None
        self._summary_tokens = 0
        self._turns: list[Message] = []
        self._turn_tokens: list[int] = []

    @property
    def messages(self) -> list[Message]:
        """What the model is sent."""
        summary = [self._summary] if self._summary is not None else []
        return [*self._head, *summary, *self._turns]

    @property
    def estimated_tokens(self) -> int:
        return self._head_tokens + self._summary_tokens + sum(self._turn_tokens)

    def append(self, message: Message) -> None:
        self._turns.append(message)
        self._turn_tokens.append(estimate_tokens(message))

    def compact(self) -> Compaction | None:
        """Compact the oldest turns when the conversation is over budget; None when it is not
        (or when only the most recent group of turns is left)."""
        if self.estimated_tokens <= self.max_tokens:
            return None
        starts = _group_starts(self._turns)
        keep_from = self._keep_from(starts)
        if keep_from == 0:
            return None
        dropped = self._turns[:keep_from]
        for message in dropped:
            self._summary_lines.extend(_summary_lines(message))
        self._turns = self._turns[keep_from:]
        self._turn_tokens = self._turn_tokens[keep_from:]
        text = self._bounded_summary()
        self._summary = Message.user(text)
        self._summary_tokens = estimate_tokens(self._summary)
        return Compaction(messages=len(dropped), summary=text)

    def _keep_from(self, starts: Sequence[int]) -> int:
        """Index of the first turn kept: the most recent groups within half the budget, and
        at least the last group."""
        room = self.max_tokens // 2
        keep_from = starts[-1]
        kept = sum(self._turn_tokens[keep_from:])
        for start in reversed(starts[:-1]):
            size = sum(self._turn_tokens[start:keep_from])
            if kept + size > room:
                break
            keep_from, kept = start, kept + size
        return keep_from

    def _bounded_summary(self) -> str:
        """The summary text, its oldest lines dropped to stay within a quarter of the budget."""
        room = self.max_tokens // 4 * CHARS_PER_TOKEN - len(SUMMARY_HEADER) - OMITTED_LINE_CHARS
        lines = self._summary_lines
        total = sum(len(line) + 1 for line in lines)
        first = 0
        while total > room and first < len(lines) - 1:
            total -= len(lines[first]) + 1
            first += 1
        omitted = [f"({first} earlier lines omitted)"] if first else []
        return "\n".join([SUMMARY_HEADER, *omitted, *lines[first:]])


def _group_starts(turns: Sequence[Message]) -> list[int]:
    """Where each group of turns begins: at every assistant message (and at 0)."""
    starts = [index for index, message in enumerate(turns) if message.role is Role.ASSISTANT]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return starts


def _summary_lines(message: Message) -> list[str]:
    lines: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart) and part.text.strip():
            lines.append(f"- {message.role.value} said: {_excerpt(part.text)}")
        elif isinstance(part, ToolCall):
            lines.append(f"- called {part.name}({_excerpt(_arguments_text(part))})")
        elif isinstance(part, ToolResult):
            outcome = "failed" if part.is_error else "returned"
            lines.append(f"- {part.name} {outcome}: {_excerpt(part.content)}")
    return lines


def _arguments_text(call: ToolCall) -> str:
    if call.malformed_arguments is not None:
        return call.malformed_arguments
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"))


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "…"
