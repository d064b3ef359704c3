"""`calculator`: arithmetic on numbers, evaluated from the syntax tree, never with `eval`.

Allowed: int and float literals, + - * / // % **, unary + and -, parentheses, the constants
pi, e and tau, and the functions in FUNCTIONS. Integers are bounded to MAX_INT_BITS bits and
checked before each multiplication or power, so no expression can make the runner compute for
long or run out of memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from opspawn.runner.tools.base import ToolDefinition, ToolError, ToolResult

Number = int | float

MAX_EXPRESSION_CHARS = 1000
MAX_NODES = 200
MAX_INT_BITS = 4096
"""Largest integer the calculator computes with (about 1233 decimal digits)."""

CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _log(x: Number, base: Number = math.e) -> float:
    return math.log(x, base)


def _round(x: Number, digits: int = 0) -> Number:
    if not isinstance(digits, int) or not -20 <= digits <= 20:
        raise ToolError("round() takes a whole number of digits between -20 and 20")
    return round(x, digits)


FUNCTIONS: Mapping[str, Callable[..., Number]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": _log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}

_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

DEFINITION = ToolDefinition(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and parentheses, "
        "the constants pi, e, tau and the functions " + ", ".join(FUNCTIONS) + ". "
        "Example: sqrt(2) * (3 + 4) ** 2"
    ),
    input_schema={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_EXPRESSION_CHARS,
                "description": "The expression to evaluate.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
)


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; ToolError for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as error:
        raise ToolError(f"not an arithmetic expression: {error}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"expression has more than {MAX_NODES} parts")
    try:
        value = _eval(tree.body)
    except (ArithmeticError, ValueError, TypeError) as error:
        raise ToolError(f"{type(error).__name__}: {error}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value


def _eval(node: ast.expr) -> Number:
    match node:
        case ast.Constant(value=bool()):
            raise ToolError("booleans are not numbers here")
        case ast.Constant(value=int() | float() as value):
            return _bounded(value)
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return +_eval(operand)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _eval(left), _eval(right)
            _check_size(op, a, b)
            return _bounded(_BINARY[type(op)](a, b))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            return _bounded(FUNCTIONS[name](*(_eval(arg) for arg in args)))
        case ast.Name(id=name):
            raise ToolError(f"unknown name {name!r}: only numbers, operators and functions")
        case ast.Call():
            raise ToolError("only these functions can be called: " + ", ".join(FUNCTIONS))
        case _:
            raise ToolError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _check_size(op: ast.operator, a: Number, b: Number) -> None:
    """Refuse an integer multiplication or power whose result would exceed MAX_INT_BITS."""
    if not (isinstance(a, int) and isinstance(b, int)):
        return
    if isinstance(op, ast.Mult) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise ToolError(f"result would exceed {MAX_INT_BITS} bits")
    too_large = b > MAX_INT_BITS or (abs(a).bit_length() - 1) * b > MAX_INT_BITS
    if isinstance(op, ast.Pow) and abs(a) > 1 and too_large:
        raise ToolError(f"exponent too large: the result would exceed {MAX_INT_BITS} bits")


def _bounded(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"the result is not a real number: {value!r}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"result would exceed {MAX_INT_BITS} bits")
    return value


class Calculator:
    """The calculator tool."""

    definition = DEFINITION

    def __init__(self, timeout_seconds: float = 5) -> None:
        self.timeout_seconds = timeout_seconds

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(repr(evaluate(str(arguments["expression"]))))
