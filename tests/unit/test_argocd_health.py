"""The Argo CD health check of AgentTasks (manifests/argocd/agenttask-health.lua), run by Lua 5.1,
the language version of Argo CD's interpreter (gopher-lua)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "manifests" / "argocd" / "agenttask-health.lua"


def health(task: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(task, recursive=True)
    result = runtime.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def condition(kind: str, status: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": "R", "message": message}


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"spec": {}}, ("Progressing", "Pending")),
        ({"spec": {}, "status": {"phase": "Queued"}}, ("Progressing", "Queued")),
        (
            {
                "spec": {},
                "status": {
                    "phase": "Running",
                    "conditions": [condition("Succeeded", "Unknown", "step 3 of 10")],
                },
            },
            ("Progressing", "step 3 of 10"),
        ),
        (
            {
                "spec": {},
                "status": {
                    "phase": "Running",
                    "conditions": [
                        condition("Succeeded", "Unknown", ""),
                        condition("Stalled", "True", "no events for 300s"),
                    ],
                },
            },
            ("Progressing", "Stalled: no events for 300s"),
        ),
        (
            {
                "spec": {},
                "status": {
                    "phase": "Succeeded",
                    "conditions": [condition("Succeeded", "True", "done in 4 steps")],
                },
            },
            ("Healthy", "done in 4 steps"),
        ),
        (
            {
                "spec": {},
                "status": {
                    "phase": "Failed",
                    "conditions": [condition("Succeeded", "False", "SecretNotFound: openai")],
                },
            },
            ("Degraded", "SecretNotFound: openai"),
        ),
        ({"spec": {}, "status": {"phase": "TimedOut"}}, ("Degraded", "TimedOut")),
        ({"spec": {"cancel": True}, "status": {"phase": "Cancelled"}}, ("Degraded", "Cancelled")),
        ({"spec": {"suspend": True}, "status": {"phase": "Queued"}}, ("Suspended", "Queued")),
    ],
)
def test_phases_map_to_argo_cd_health(task: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health(task) == expected


def test_install_docs_show_the_tested_script() -> None:
    docs = (ROOT / "docs" / "install.md").read_text()
    indented = "\n".join(f"    {line}" if line else "" for line in SCRIPT.read_text().splitlines())
    assert indented in docs
