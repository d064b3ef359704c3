"""The kopf settings stay valid for the handlers the operator registers."""

from __future__ import annotations

from typing import cast

import kopf
from kubernetes_asyncio import client

from opspawn.operator.handlers import build_registry
from opspawn.operator.kopf_config import EventHandlersOnlyDiffBase
from opspawn.operator.reconciler import Reconciler


def test_no_handler_needs_the_diff_base_the_operator_leaves_empty() -> None:
    """Change handlers, daemons and timers read kopf's diff-base; event handlers do not."""
    registry = build_registry(cast(Reconciler, object()), client.Configuration())

    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert len(registry._watching.get_all_handlers()) == 2


def test_the_diff_base_is_empty_whatever_the_object() -> None:
    body = kopf.Body({"metadata": {"name": "t"}, "spec": {"goal": "g"}, "status": {"steps": 1}})

    assert EventHandlersOnlyDiffBase(prefix="opspawn.io").build(body=body) == {}
