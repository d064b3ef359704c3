"""The calculator evaluates arithmetic and nothing else."""

from __future__ import annotations

import math

import pytest

from opspawn.runner.tools import ToolError
from opspawn.runner.tools.calculator import MAX_INT_BITS, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 / 4", 2.5),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("-2 ** 2", -4),
        ("+3", 3),
        ("2 ** -1", 0.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("round(pi, 2)", 3.14),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("log(8, 2)", 3.0),
        ("floor(2.7) + ceil(2.1)", 5),
        ("1e3", 1000.0),
        ("2 ** 4000 // 2 ** 3999", 2),
    ],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


def test_constants() -> None:
    assert evaluate("tau / 2") == pytest.approx(math.pi)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "only these functions"),
        ("__import__('os').system('true')", "only these functions"),
        ("os", "unknown name 'os'"),
        ("x + 1", "unknown name 'x'"),
        ("().__class__.__bases__", "not allowed"),
        ("(lambda: 1)()", "only these functions"),
        ("[1, 2]", "List is not allowed"),
        ("'a' * 3", "Constant is not allowed"),
        ("1 if True else 2", "IfExp is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("1 << 100", "BinOp is not allowed"),
        ("True + 1", "booleans"),
        ("sqrt(x=4)", "only these functions"),
        ("import os", "not an arithmetic expression"),
        ("1 +", "not an arithmetic expression"),
    ],
)
def test_refuses_everything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression", ["9 ** 9 ** 9", "2 ** 100000", "10 ** 5000", "(10 ** 1000) * (10 ** 1000)"]
)
def test_refuses_huge_numbers_before_computing_them(expression: str) -> None:
    with pytest.raises(ToolError, match=f"{MAX_INT_BITS} bits"):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "ZeroDivisionError"),
        ("10.0 ** 400", "OverflowError"),
        ("1e308 * 10", "not a finite number"),
        ("(-8) ** 0.5", "not a real number"),
        ("sqrt(-1)", "ValueError"),
        ("sqrt(1, 2)", "TypeError"),
        ("round(1.5, 1000)", "digits"),
    ],
)
def test_arithmetic_errors_are_tool_errors(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


def test_refuses_long_and_deep_expressions() -> None:
    with pytest.raises(ToolError, match="longer than"):
        evaluate("1+" * 600 + "1")
    with pytest.raises(ToolError, match="more than"):
        evaluate("+".join(["1"] * 150))
    with pytest.raises(ToolError, match="not an arithmetic expression"):
        evaluate("(" * 300 + "1" + ")" * 300)
