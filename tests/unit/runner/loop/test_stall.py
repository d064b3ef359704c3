"""Stall detection: the same call (name and arguments) N times in a row."""

from __future__ import annotations

import pytest

from opspawn.runner.model.types import ToolCall
from opspawn.runner.stall import StallDetector


def same(name: str = "search", **arguments: object) -> ToolCall:
    return ToolCall(id="x", name=name, arguments=dict(arguments))


def test_the_nth_identical_call_in_a_row_is_a_stall() -> None:
    detector = StallDetector(3)
    assert detector.observe([same(q="a", n=1)]) is None
    assert detector.observe([same(n=1, q="a")]) is None  # key order does not matter
    stalled = detector.observe([same(q="a", n=1)])
    assert stalled is not None and stalled.name == "search"


def test_a_different_call_in_between_starts_over() -> None:
    detector = StallDetector(2)
    assert detector.observe([same(q="a"), same(q="b")]) is None
    assert detector.observe([same(q="a")]) is None
    assert detector.observe([same("fetch", q="a")]) is None


def test_identical_calls_within_one_turn_count() -> None:
    assert StallDetector(2).observe([same(q="a"), same(q="a")]) is not None


def test_malformed_arguments_are_compared_as_text() -> None:
    detector = StallDetector(2)
    bad = ToolCall(id="x", name="search", malformed_arguments="{oops")
    assert detector.observe([bad]) is None
    assert detector.observe([bad]) is not None


def test_a_limit_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two"):
        StallDetector(1)
