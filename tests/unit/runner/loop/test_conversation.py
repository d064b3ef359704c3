"""Short-term memory: compaction keeps the opening, the recent turns and call/result pairs."""

from __future__ import annotations

import re

from opspawn.runner.conversation import SUMMARY_HEADER, Conversation, estimate_tokens
from opspawn.runner.model.types import Message, Role, ToolResult
from tests.unit.runner.loop.scripted import call, tools_turn

SYSTEM, GOAL = Message.system("be careful"), Message.user("count the files")


def tool_round(n: int, size: int) -> list[Message]:
    """An assistant turn with two calls, and their results."""
    calls = [call("ls", path=f"/d{n}"), call("wc", path=f"/d{n}")]
    results = [ToolResult(call_id=c.id, name=c.name, content=f"{n}:" + "y" * size) for c in calls]
    return [tools_turn(*calls).message, Message.tool(results)]


def assert_pairs_intact(messages: list[Message]) -> None:
    """Every tool message answers exactly the calls of the assistant message before it."""
    for index, message in enumerate(messages):
        if message.role is Role.TOOL:
            before = messages[index - 1]
            assert before.role is Role.ASSISTANT
            assert [c.id for c in before.tool_calls] == [r.call_id for r in message.tool_results]


def test_small_conversations_are_left_alone() -> None:
    conversation = Conversation(SYSTEM, GOAL, max_tokens=10_000)
    for message in tool_round(1, 10):
        conversation.append(message)
    assert conversation.compact() is None
    assert len(conversation.messages) == 4


def test_compaction_keeps_opening_recent_turns_and_pairs() -> None:
    conversation = Conversation(SYSTEM, GOAL, max_tokens=2000)
    for n in range(10):
        for message in tool_round(n, 800):
            conversation.append(message)
    before = conversation.estimated_tokens

    compaction = conversation.compact()

    assert compaction is not None
    messages = conversation.messages
    assert messages[:2] == [SYSTEM, GOAL]
    assert messages[2].role is Role.USER and messages[2].text.startswith(SUMMARY_HEADER)
    assert messages[3].role is Role.ASSISTANT
    assert_pairs_intact(messages[3:])
    assert messages[-1].tool_results[0].content.startswith("9:")
    assert compaction.messages == 20 - len(messages[3:])
    assert conversation.estimated_tokens < before
    assert conversation.estimated_tokens <= conversation.max_tokens
    assert "called ls" in compaction.summary and "wc returned" in compaction.summary


def test_the_last_group_is_kept_even_when_it_alone_is_over_budget() -> None:
    conversation = Conversation(SYSTEM, GOAL, max_tokens=1000)
    for message in tool_round(1, 10) + tool_round(2, 10_000):
        conversation.append(message)

    assert conversation.compact() is not None
    assert len(conversation.messages) == 5  # system, goal, summary, the last call and result
    assert_pairs_intact(conversation.messages[3:])
    assert conversation.compact() is None  # nothing more can go


def test_repeated_compaction_keeps_a_bounded_summary() -> None:
    conversation = Conversation(SYSTEM, GOAL, max_tokens=1000)
    for n in range(200):
        for message in tool_round(n, 300):
            conversation.append(message)
        conversation.compact()
    summary = conversation.messages[2].text
    assert estimate_tokens(conversation.messages[2]) <= conversation.max_tokens // 4
    assert "earlier lines omitted" in summary
    mentioned = [int(n) for n in re.findall(r'"/d(\d+)"', summary)]
    assert mentioned and min(mentioned) > 150  # the oldest lines went first
