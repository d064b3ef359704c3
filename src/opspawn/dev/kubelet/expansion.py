"""Kubernetes `$(VAR)` expansion, with the kubelet's exact rules.

- `$(NAME)` becomes the value of NAME when NAME is defined, and stays `$(NAME)` otherwise;
- `$$` becomes a literal `$` (so `$$(NAME)` is the literal text `$(NAME)`);
- a `$` followed by anything else, or an unterminated `$(`, stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `$(VAR)` references in `text` using `lookup` (None: not defined)."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def expand_with(text: str, variables: Mapping[str, str]) -> str:
    """`expand` over a mapping of defined variables."""
    return expand(text, variables.get)
