"""The AgentTask CRD on a real apiserver: examples apply, bad input is refused at `kubectl apply`
with the offending field named, and a created task's spec cannot be changed (but can be
cancelled)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))

VALID: dict[str, Any] = {
    "apiVersion": "opspawn.io/v1alpha1",
    "kind": "AgentTask",
    "metadata": {"name": "valid"},
    "spec": {
        "goal": "Say hello.",
        "model": {
            "provider": "openai",
            "name": "gpt-4.1-mini",
            "apiKeySecretRef": {"name": "openai", "key": "api-key"},
        },
    },
}


def _task(name: str, **spec_changes: Any) -> dict[str, Any]:
    task = copy.deepcopy(VALID)
    task["metadata"]["name"] = name
    task["spec"].update(spec_changes)
    return task


def _apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any]) -> Any:
    return kubectl("apply", "-f", "-", stdin=json.dumps(manifest), namespace=namespace)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_examples_apply(kubectl: Kubectl, namespace: str, example: Path) -> None:
    result = kubectl("apply", "-f", str(example), namespace=namespace)
    assert result.returncode == 0, result.stderr


def test_defaults_are_filled_in(kubectl: Kubectl, namespace: str) -> None:
    assert _apply(kubectl, namespace, _task("defaults")).returncode == 0
    stored = json.loads(
        kubectl("get", "agenttask", "defaults", "-o", "json", namespace=namespace).stdout
    )
    spec = stored["spec"]
    assert spec["limits"]["maxSteps"] == 20
    assert spec["limits"]["timeoutSeconds"] == 600
    assert spec["retry"] == {"limit": 2, "backoff": {"initialSeconds": 10, "maxSeconds": 300}}
    assert spec["memory"]["longTerm"]["enabled"] is False
    assert spec["model"]["toolCalling"] == "native"
    assert (spec["cancel"], spec["suspend"], spec["priority"]) == (False, False, 0)


def test_short_name_and_category(kubectl: Kubectl, namespace: str) -> None:
    assert _apply(kubectl, namespace, _task("listed")).returncode == 0
    for resource in ("at", "opspawn"):
        listing = kubectl("get", resource, "-o", "name", namespace=namespace)
        assert "agenttask.opspawn.io/listed" in listing.stdout, resource


def _model(**changes: Any) -> dict[str, Any]:
    model: dict[str, Any] = copy.deepcopy(VALID["spec"]["model"])
    model.update(changes)
    return {k: v for k, v in model.items() if v is not None}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing-goal", {"goal": None}, "spec.goal: Required value"),
    ("empty-goal", {"goal": ""}, "spec.goal"),
    ("goal-too-long", {"goal": "x" * 16_385}, "spec.goal: Too long"),
    (
        "unknown-provider",
        {"model": _model(provider="cohere")},
        "spec.model.provider: Unsupported value",
    ),
    ("missing-model-name", {"model": _model(name=None)}, "spec.model.name: Required value"),
    ("temperature-range", {"model": _model(temperature=3)}, "spec.model.temperature"),
    (
        "anthropic-temperature",
        {"model": _model(provider="anthropic", temperature=1.5)},
        "spec.model.temperature",
    ),
    (
        "compatible-needs-base-url",
        {"model": _model(provider="openai-compatible", apiKeySecretRef=None)},
        "spec.model.baseURL",
    ),
    (
        "base-url-only-for-compatible",
        {"model": _model(baseURL="http://vllm:8000/v1")},
        "spec.model.baseURL",
    ),
    (
        "base-url-not-a-url",
        {"model": _model(provider="openai-compatible", baseURL="ftp://x")},
        "spec.model.baseURL",
    ),
    (
        "hosted-provider-needs-key",
        {"model": _model(apiKeySecretRef=None)},
        "spec.model.apiKeySecretRef",
    ),
    ("react-only-for-compatible", {"model": _model(toolCalling="react")}, "spec.model.toolCalling"),
    (
        "bad-secret-name",
        {"model": _model(apiKeySecretRef={"name": "Not_A_Name", "key": "k"})},
        "spec.model.apiKeySecretRef.name",
    ),
    (
        "http-fetch-needs-hosts",
        {"tools": {"builtin": [{"name": "http_fetch"}]}},
        "spec.tools.builtin[0].allowedHosts",
    ),
    (
        "hosts-only-for-http-fetch",
        {"tools": {"builtin": [{"name": "calculator", "allowedHosts": ["a.com"]}]}},
        "spec.tools.builtin[0].allowedHosts",
    ),
    (
        "unknown-builtin-tool",
        {"tools": {"builtin": [{"name": "shell"}]}},
        "spec.tools.builtin[0].name: Unsupported value",
    ),
    (
        "duplicate-builtin-tool",
        {"tools": {"builtin": [{"name": "calculator"}, {"name": "calculator"}]}},
        "spec.tools.builtin[1]: Duplicate value",
    ),
    (
        "mcp-url-and-command",
        {
            "tools": {
                "mcpServers": [
                    {"name": "m", "url": "http://m/mcp", "command": ["m"], "allowedTools": ["a"]}
                ]
            }
        },
        "spec.tools.mcpServers[0]",
    ),
    (
        "mcp-without-allow-list",
        {"tools": {"mcpServers": [{"name": "m", "url": "http://m/mcp"}]}},
        "spec.tools.mcpServers[0].allowedTools: Required value",
    ),
    (
        "memory-tools-need-memory",
        {"tools": {"builtin": [{"name": "remember"}]}},
        "spec.tools.builtin",
    ),
    (
        "long-term-needs-collection",
        {"memory": {"longTerm": {"enabled": True}}},
        "spec.memory.longTerm.collection",
    ),
    (
        "collection-capitalised",
        {"memory": {"longTerm": {"enabled": True, "collection": "notes"}}},
        "spec.memory.longTerm.collection",
    ),
    ("max-steps-range", {"limits": {"maxSteps": 0}}, "spec.limits.maxSteps"),
    ("negative-budget", {"limits": {"maxCostUSD": -1}}, "spec.limits.maxCostUSD"),
    (
        "backoff-order",
        {"retry": {"backoff": {"initialSeconds": 600, "maxSeconds": 60}}},
        "spec.retry.backoff.initialSeconds",
    ),
    ("retry-limit-range", {"retry": {"limit": 11}}, "spec.retry.limit"),
    (
        "reserved-env-name",
        {"runner": {"env": [{"name": "OPSPAWN_TASK", "value": "x"}]}},
        "spec.runner.env[0].name",
    ),
    (
        "bad-quantity",
        {"runner": {"resources": {"limits": {"cpu": "lots"}}}},
        "spec.runner.resources.limits.cpu",
    ),
    *[
        (f"env-{name.lower().replace('_', '-')}", {"runner": {"env": [{"name": name}]}}, message)
        for name, message in [
            ("OPENAI_BASE_URL", 'spec.runner.env[0].name: Invalid value: "OPENAI_BASE_URL"'),
            ("ANTHROPIC_BASE_URL", "would send the runner's requests, and its keys"),
            ("GOOGLE_GEMINI_BASE_URL", "spec.runner.env[0].name"),
            ("HTTPS_PROXY", "proxy variables"),
            ("http_proxy", "proxy variables"),
            ("ALL_PROXY", "proxy variables"),
            ("NO_PROXY", "proxy variables"),
            ("SSL_CERT_FILE", "TLS trust"),
            ("REQUESTS_CA_BUNDLE", "TLS trust"),
            ("SSLKEYLOGFILE", "TLS trust"),
            ("OPSPAWN_NATS_URL", "reserved for the runner's own settings"),
            ("PYTHONPATH", "which code the runner loads"),
            ("LD_PRELOAD", "which code the runner loads"),
        ]
    ],
    (
        "resource-name-unknown",
        {"runner": {"resources": {"limits": {"gpu": "1"}}}},
        "spec.runner.resources.limits: Invalid value: keys must match",
    ),
    (
        "negative-quantity",
        {"runner": {"resources": {"requests": {"cpu": -1}}}},
        "spec.runner.resources.requests[cpu]: Invalid value: -1: must be a non-negative",
    ),
    (
        "requests-above-limits",
        {"runner": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}},
        "spec.runner.resources.requests: Invalid value: requests must not exceed limits",
    ),
    (
        "extended-resource-overcommitted",
        {"runner": {"resources": {"requests": {"nvidia.com/gpu": 1}}}},
        "spec.runner.resources.requests: Invalid value: extended resources and hugepages",
    ),
    (
        "hugepages-alone",
        {"runner": {"resources": {"limits": {"hugepages-2Mi": "4Mi"}}}},
        "spec.runner.resources.limits: Invalid value: hugepages need a cpu or memory",
    ),
    (
        "toleration-exists-with-value",
        {"runner": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}},
        "spec.runner.tolerations[0].value",
    ),
    (
        "toleration-without-key",
        {"runner": {"tolerations": [{"value": "yes"}]}},
        "spec.runner.tolerations[0].key: Required value",
    ),
    (
        "toleration-seconds-without-no-execute",
        {"runner": {"tolerations": [{"key": "a", "tolerationSeconds": 5}]}},
        "spec.runner.tolerations[0].tolerationSeconds",
    ),
    (
        "toleration-value-not-a-label-value",
        {"runner": {"tolerations": [{"key": "a", "value": "not ok!"}]}},
        "spec.runner.tolerations[0].value",
    ),
    (
        "node-selector-key-name-too-long",
        {"runner": {"nodeSelector": {"x" * 64: "v"}}},
        "spec.runner.nodeSelector: Invalid value: keys must match",
    ),
    (
        "node-selector-value-not-a-label-value",
        {"runner": {"nodeSelector": {"disk": "fast ssd"}}},
        "spec.runner.nodeSelector.disk",
    ),
    ("image-with-space", {"runner": {"image": "opspawn runner:1"}}, "spec.runner.image"),
    ("control-character-in-goal", {"goal": "stop\u0000here"}, "spec.goal"),
    (
        "nul-in-env-value",
        {"runner": {"env": [{"name": "TZ", "value": "UTC\u0000"}]}},
        "spec.runner.env[0].value",
    ),
    (
        "nul-in-mcp-command",
        {"tools": {"mcpServers": [{"name": "m", "command": ["srv\u0000"], "allowedTools": ["t"]}]}},
        "spec.tools.mcpServers[0].command[0]",
    ),
    (
        "text-over-the-byte-budget",
        {"goal": "\U0001f600" * 16_384, "context": "\U0001f600" * 8192},
        "spec: Invalid value: the spec's text (goal, context, inputs and outputSchema together)",
    ),
    ("output-schema-not-json-object", {"outputSchema": "type: object"}, "spec.outputSchema"),
    ("input-key-not-identifier", {"inputs": {"not valid": "x"}}, "spec.inputs"),
    ("priority-range", {"priority": 5000}, "spec.priority"),
    ("unknown-field", {"goall": "typo"}, 'unknown field "spec.goall"'),
]


@pytest.mark.parametrize(
    ("name", "changes", "expected"), INVALID, ids=[case[0] for case in INVALID]
)
def test_invalid_task_is_refused_naming_the_field(
    kubectl: Kubectl, namespace: str, name: str, changes: dict[str, Any], expected: str
) -> None:
    task = _task(name)
    for key, value in changes.items():
        if value is None:
            task["spec"].pop(key, None)
        else:
            task["spec"][key] = value
    result = _apply(kubectl, namespace, task)
    assert result.returncode != 0, f"{name} was accepted"
    assert expected in result.stderr, result.stderr
    assert kubectl("get", "agenttask", name, namespace=namespace).returncode != 0, (
        "nothing is left behind"
    )


def test_a_name_too_long_to_label_the_runner_job_is_refused(
    kubectl: Kubectl, namespace: str
) -> None:
    result = _apply(kubectl, namespace, _task("n" * 64))
    assert result.returncode != 0
    assert "metadata.name: Too long: may not be more than 63" in result.stderr, result.stderr


def test_specs_at_the_new_limits_are_still_admitted(kubectl: Kubectl, namespace: str) -> None:
    """The refusals above stop at what Kubernetes itself refuses: the largest name, ordinary
    variables, whole extended resources and NoExecute tolerations still apply."""
    runner = {
        "env": [{"name": "TZ", "value": "UTC"}, {"name": "LANG", "value": "C.UTF-8"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 1},
            "limits": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": "1"},
        },
        "tolerations": [
            {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
        ],
        "nodeSelector": {"kubernetes.io/os": "linux", "disk": "fast-ssd"},
        "image": "registry.example.com:5000/team/opspawn@sha256:" + "a" * 64,
    }
    task = _task("n" * 63, runner=runner, goal="\u00e9" * 16_384)
    result = _apply(kubectl, namespace, task)
    assert result.returncode == 0, result.stderr


Spec = dict[str, Any]
IMMUTABLE_CHANGES: list[tuple[str, tuple[Spec, Spec], str]] = [
    ("goal", ({}, {"goal": "Say goodbye."}), "spec.goal: Forbidden: goal is immutable"),
    ("model", ({}, {"model": _model(name="gpt-4.1")}), "spec.model: Forbidden: model is immutable"),
    ("limits", ({}, {"limits": {"maxSteps": 50}}), "spec.limits: Forbidden: limits is immutable"),
    ("changed-context", ({"context": "a"}, {"context": "b"}), "spec.context: Forbidden: context"),
    ("added-context", ({}, {"context": "late"}), "spec: Forbidden: context is immutable"),
    ("removed-queue", ({"queue": "batch"}, {}), "spec: Forbidden: queue is immutable"),
]


@pytest.mark.parametrize(
    ("name", "change", "expected"), IMMUTABLE_CHANGES, ids=[c[0] for c in IMMUTABLE_CHANGES]
)
def test_spec_is_immutable_after_creation(
    kubectl: Kubectl, namespace: str, name: str, change: tuple[Spec, Spec], expected: str
) -> None:
    before, after = change
    assert _apply(kubectl, namespace, _task("immutable", **before)).returncode == 0
    result = _apply(kubectl, namespace, _task("immutable", **after))
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_status_writes_pass_the_immutability_rules(kubectl: Kubectl, namespace: str) -> None:
    """The rules compare the spec with its old self: a write that leaves the spec alone (as the
    operator's status writes do) passes them."""
    task = _task("status-write", context="c", queue="batch", runner={"image": "r:1"})
    assert _apply(kubectl, namespace, task).returncode == 0
    result = kubectl(
        "patch",
        "agenttask",
        "status-write",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"steps": 3}}),
        namespace=namespace,
    )
    assert result.returncode == 0, result.stderr


def test_cancel_suspend_priority_and_ttl_may_change_but_cancel_is_final(
    kubectl: Kubectl, namespace: str
) -> None:
    assert _apply(kubectl, namespace, _task("mutable")).returncode == 0
    changed = _apply(
        kubectl,
        namespace,
        _task("mutable", suspend=True, priority=100, ttlSecondsAfterFinished=60, cancel=True),
    )
    assert changed.returncode == 0, changed.stderr
    undone = _apply(
        kubectl,
        namespace,
        _task("mutable", suspend=True, priority=100, ttlSecondsAfterFinished=60, cancel=False),
    )
    assert undone.returncode != 0
    assert "spec.cancel: Forbidden: cancel cannot be undone" in undone.stderr


def test_status_is_a_subresource(kubectl: Kubectl, namespace: str) -> None:
    assert _apply(kubectl, namespace, _task("status-split")).returncode == 0
    patched = kubectl(
        "patch",
        "agenttask",
        "status-split",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Succeeded"}}),
        namespace=namespace,
    )
    assert patched.returncode == 0
    stored = yaml.safe_load(
        kubectl("get", "agenttask", "status-split", "-o", "yaml", namespace=namespace).stdout
    )
    assert "status" not in stored or stored["status"].get("phase") != "Succeeded", (
        "status changed through the main resource"
    )
    via_subresource = kubectl(
        "patch",
        "agenttask",
        "status-split",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Running", "steps": 3}}),
        namespace=namespace,
    )
    assert via_subresource.returncode == 0, via_subresource.stderr
    table = kubectl("get", "agenttask", "status-split", namespace=namespace).stdout
    assert "Running" in table and "gpt-4.1-mini" in table


def test_kubectl_explain_reads_well(kubectl: Kubectl) -> None:
    explained = kubectl("explain", "agenttask.spec.limits.maxCostUSD")
    assert explained.returncode == 0, explained.stderr
    assert "US dollars" in explained.stdout
