"""Pods that the real node's tests and benchmark run beside the chart's: restricted, as the
namespaces' Pod Security asks, on an image already imported into containerd."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opspawn.operator.runner_job import RUNNER_UID


def restricted_pod(
    name: str, image: str, command: list[str], labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Pod that passes Pod Security `restricted` and runs `command` once, never pulling."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUNNER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }
