"""A container's environment is resolved in the kubelet's order, with its error messages."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from opspawn.dev.kubelet.environment import ContainerConfigError, container_environment

POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "team", "uid": "u-1", "labels": {"app": "demo"}},
    "spec": {"nodeName": "n", "serviceAccountName": "sa"},
    "status": {},
}
OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("Secret", "keys"): {
        "metadata": {"namespace": "team", "name": "keys"},
        "data": {"token": base64.b64encode(b"t0k3n").decode()},
    },
    ("ConfigMap", "settings"): {
        "metadata": {"namespace": "team", "name": "settings"},
        "data": {"MODE": "fast", "LEVEL": "3"},
    },
}


def fetch(kind: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, name))


def test_order_and_sources() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "token"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "WHERE", "value": "$(APP) in $(NS)"},  # NS is defined later: stays literal
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "CFG_MODE", "value": "slow, not $(CFG_MODE)"},
        ],
    }
    assert container_environment(POD, container, fetch) == {
        "CFG_MODE": "slow, not fast",
        "CFG_LEVEL": "3",
        "TOKEN": "t0k3n",
        "APP": "demo",
        "WHERE": "demo in $(NS)",
        "NS": "team",
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
        ({"configMapKeyRef": {"name": "absent", "key": "k"}}, 'configmap "absent" not found'),
        (
            {"secretKeyRef": {"name": "keys", "key": "nope"}},
            "couldn't find key nope in Secret team/keys",
        ),
    ],
)
def test_missing_references_are_config_errors(entry: dict[str, Any], message: str) -> None:
    container = {"env": [{"name": "X", "valueFrom": entry}]}
    with pytest.raises(ContainerConfigError, match=message):
        container_environment(POD, container, fetch)


def test_optional_references_may_be_missing() -> None:
    container = {
        "env": [
            {
                "name": "X",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
        ],
        "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
    }
    assert container_environment(POD, container, fetch) == {}
