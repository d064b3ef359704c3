"""The operator's process runs kopf without the synchronous kubernetes client or pykube."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from opspawn.operator.lean_imports import refuse_unused_kubernetes_clients
refuse_unused_kubernetes_clients()
import kopf
import kubernetes_asyncio.client
import opspawn.operator.main
print(sys.modules["kubernetes"] is None, sys.modules["pykube"] is None)
"""


def test_kopf_and_the_operator_import_without_the_unused_clients() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "True True"
