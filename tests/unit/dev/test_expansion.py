"""`$(VAR)` expansion follows the kubelet's rules exactly."""

from __future__ import annotations

import pytest

from opspawn.dev.kubelet.expansion import expand_with

VARIABLES = {"A": "alpha", "B": "$(A)", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "alpha"),
        ("x-$(A)-y", "x-alpha-y"),
        ("$(A)$(A)", "alphaalpha"),
        ("$(UNDEFINED)", "$(UNDEFINED)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$alpha"),
        ("$$$$(A)", "$$(A)"),
        ("$$", "$"),
        ("$A", "$A"),
        ("$", "$"),
        ("a$", "a$"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("$(EMPTY)x", "x"),
        ("$(B)", "$(A)"),  # values are not expanded twice
        ("$(OPENAI_API_KEY) stays literal", "$(OPENAI_API_KEY) stays literal"),
        ("no references", "no references"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand_with(text, VARIABLES) == expected
