"""The Helm chart as rendered by the pinned helm: lint, values schema, RBAC, Pod security,
settings, NetworkPolicy, metrics — for the defaults and every documented values combination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opspawn.dev.helm import CHART, helm, template
from opspawn.operator.cli import operator as operator_command
from opspawn.operator.cli import settings_from_options
from opspawn.operator.rbac import OPERATOR_RULES
from tests.integration.chart.conftest import COMBINATIONS, values_file

KubeObject = dict[str, Any]
RELEASE_NAMESPACE = "opspawn-system"


def objects(values: dict[str, Any]) -> list[KubeObject]:
    return template(values, release="opspawn", namespace=RELEASE_NAMESPACE)


def of_kind(rendered: list[KubeObject], kind: str) -> list[KubeObject]:
    return [obj for obj in rendered if obj["kind"] == kind]


def operator_container(rendered: list[KubeObject]) -> KubeObject:
    (deployment,) = of_kind(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_helm_lint_is_clean(combination: str, tmp_path: Path) -> None:
    path = values_file(combination)
    if path is None:
        path = tmp_path / "values.json"
        path.write_text(json.dumps(COMBINATIONS[combination]))
    linted = helm("lint", "--strict", str(CHART), "-f", str(path))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"operater": {"workers": 2}}, "additional properties 'operater' not allowed"),
        ({"operator": {"maxRuning": 3}}, "additional properties 'maxRuning' not allowed"),
        ({"operator": {"workers": "8"}}, "workers"),
        ({"operator": {"logLevel": "LOUD"}}, "logLevel"),
        ({"runner": {"modelBaseURLs": {"opneai": "https://x"}}}, "'opneai' not allowed"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
    ],
)
def test_values_schema_refuses_typos_and_wrong_types(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(RuntimeError, match="values don't meet the specifications") as refused:
        objects(values)
    assert complaint in str(refused.value)


def test_cluster_wide_install_grants_exactly_the_operator_rules_cluster_wide() -> None:
    rendered = objects({})
    (role,) = [
        r for r in of_kind(rendered, "ClusterRole") if r["metadata"]["name"].endswith("-operator")
    ]
    assert role["rules"] == OPERATOR_RULES
    (binding,) = of_kind(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (account,) = of_kind(rendered, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": RELEASE_NAMESPACE,
        }
    ]
    assert not of_kind(rendered, "Role") and not of_kind(rendered, "RoleBinding")


def test_namespaced_install_grants_the_operator_rules_only_in_the_watched_namespaces() -> None:
    rendered = objects(COMBINATIONS["namespaced"])
    roles = of_kind(rendered, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(role["rules"] == OPERATOR_RULES for role in roles)
    bindings = of_kind(rendered, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert not of_kind(rendered, "ClusterRoleBinding")
    # The only cluster-scoped roles left extend admin/edit/view for users; none is bound here.
    assert all(
        any(
            label.startswith("rbac.authorization.k8s.io/aggregate-to-")
            for label in r["metadata"]["labels"]
        )
        for r in of_kind(rendered, "ClusterRole")
    )
    env = {e["name"]: e for e in operator_container(rendered)["env"]}
    assert env["OPSPAWN_OPERATOR_NAMESPACES"]["value"] == "team-a team-b"


def test_aggregated_roles_extend_admin_edit_and_view_to_agenttasks() -> None:
    roles = {
        label.rsplit("-", 1)[1]: role
        for role in of_kind(objects({}), "ClusterRole")
        for label in role["metadata"]["labels"]
        if label.startswith("rbac.authorization.k8s.io/aggregate-to-")
    }
    assert set(roles) == {"admin", "edit", "view"}
    view_verbs = roles["view"]["rules"][0]["verbs"]
    assert sorted(view_verbs) == ["get", "list", "watch"]
    for name in ("admin", "edit"):
        assert {"create", "update", "patch", "delete"} <= set(roles[name]["rules"][0]["verbs"])
    for role in roles.values():
        assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {"opspawn.io"}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_operator_pod_is_restricted_single_replica_recreate_with_probes(combination: str) -> None:
    rendered = objects(COMBINATIONS[combination])
    (deployment,) = of_kind(rendered, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(rendered)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    port = container["ports"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert port["name"] == "metrics"
    assert str(port["containerPort"]) == env["OPSPAWN_OPERATOR_HEALTH_PORT"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["serviceAccountName"] == (
        COMBINATIONS[combination].get("serviceAccount", {}).get("name") or "opspawn"
    )


def _parsed_by_the_cli(container: KubeObject, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The operator's settings as `opspawn operator` reads them from the container's env."""
    known = {f"OPSPAWN_OPERATOR_{p.name.upper()}" for p in operator_command.params if p.name}
    for variable in [*known, "DATABASE_URL"]:
        monkeypatch.delenv(variable, raising=False)
    for variable in container["env"]:
        if variable["name"].startswith("OPSPAWN_OPERATOR_"):
            assert variable["name"] in known, f"{variable['name']} is no option of the operator"
            monkeypatch.setenv(variable["name"], variable.get("value", "postgresql://from-secret"))
    context = operator_command.make_context("operator", [])
    return dict(context.params)


def test_settings_reach_the_operator_command_as_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tuned = _parsed_by_the_cli(operator_container(objects(COMBINATIONS["tuned"])), monkeypatch)
    assert tuned["nats_url"] == (
        "nats://nats-0.nats.messaging.svc:4222,nats://nats-1.nats.messaging.svc:4222"
    )
    assert tuned["runner_image"] == "registry.example/opspawn-runner:0.1.0"
    assert tuned["runner_command"] == "/usr/local/bin/opspawn runner"
    assert tuned["model_base_urls"] == (
        "anthropic=https://llm-gateway.example/anthropic",
        "openai=https://llm-gateway.example/v1",
    )
    assert (tuned["max_running"], tuned["max_running_per_namespace"]) == (100, 10)
    assert tuned["max_running_per_model"] == 20
    assert tuned["namespace_limits"] == ("team-a=30", "team-b=5")
    assert (tuned["workers"], tuned["stall_seconds"], tuned["health_port"]) == (16, 0, 9090)
    assert (tuned["status_interval_seconds"], tuned["status_writes_in_flight"]) == (1.5, 2)
    settings = settings_from_options(tuned)  # what the operator then runs with
    assert (settings.mirror_interval_seconds, settings.mirror_writes_in_flight) == (1.5, 2)
    assert settings.limits.per_namespace_overrides == {"team-a": 30, "team-b": 5}
    assert settings.runner.command == ("/usr/local/bin/opspawn", "runner")
    assert (tuned["deadline_grace_seconds"], tuned["termination_grace_seconds"]) == (60, 10)
    assert (tuned["log_format"], tuned["log_level"]) == ("text", "DEBUG")
    assert tuned["namespaces"] == () and tuned["database_url"] is None
    assert tuned["weaviate_url"] == "http://weaviate.weaviate.svc:8080"
    assert tuned["weaviate_grpc_address"] == "weaviate-grpc.weaviate.svc:50051"
    assert tuned["weaviate_api_key_file"] == "/var/run/secrets/opspawn/weaviate/api-key"
    assert tuned["embedding_models"] == ("openai=text-embedding-3-small",)

    namespaced = _parsed_by_the_cli(
        operator_container(objects(COMBINATIONS["namespaced"])), monkeypatch
    )
    assert namespaced["namespaces"] == ("team-a", "team-b")
    assert namespaced["database_url"] == "postgresql://from-secret"
    assert namespaced["migrate"] is False

    default = _parsed_by_the_cli(operator_container(objects({})), monkeypatch)
    assert default["runner_image"] == "ghcr.io/opspawn/opspawn:0.1.0"
    assert default["runner_command"] == "opspawn runner"
    assert default["database_url"] is None and default["migrate"] is True


def test_every_operator_option_is_a_chart_value() -> None:
    """A new option of `opspawn operator` fails here until the chart can set it (the
    kubeconfig excepted: in the cluster the operator uses its ServiceAccount)."""
    set_somewhere = {
        variable["name"]
        for values in COMBINATIONS.values()
        for variable in operator_container(objects(values))["env"]
    }
    for parameter in operator_command.params:
        assert parameter.name is not None
        if parameter.name == "kubeconfig":
            continue
        envvar = parameter.envvar or []
        names = {f"OPSPAWN_OPERATOR_{parameter.name.upper()}"}
        names |= {envvar} if isinstance(envvar, str) else set(envvar)
        assert names & set_somewhere, f"--{parameter.name} cannot be set from the chart's values"


def test_database_url_comes_from_the_existing_secret_only() -> None:
    container = operator_container(objects(COMBINATIONS["namespaced"]))
    (variable,) = [e for e in container["env"] if e["name"] == "OPSPAWN_OPERATOR_DATABASE_URL"]
    assert variable == {
        "name": "OPSPAWN_OPERATOR_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "opspawn-audit", "key": "dsn"}},
    }


def test_runner_network_policy_allows_dns_nats_and_models_only() -> None:
    rendered = objects(COMBINATIONS["namespaced"])
    policies = of_kind(rendered, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    spec = policies[0]["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "opspawn-runner",
            "app.kubernetes.io/managed-by": "opspawn",
        }
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    ports = [sorted((p["protocol"], p["port"]) for p in rule["ports"]) for rule in spec["egress"]]
    assert ports == [[("TCP", 53), ("UDP", 53)], [("TCP", 4222)], [("TCP", 443)]]
    (model_peer,) = spec["egress"][2]["to"]
    assert "169.254.0.0/16" in model_peer["ipBlock"]["except"]  # no cloud metadata service
    assert "10.0.0.0/8" in model_peer["ipBlock"]["except"]

    assert not of_kind(objects({}), "NetworkPolicy")  # cluster-wide: namespaces must be listed
    cluster = of_kind(objects(COMBINATIONS["cluster"]), "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in cluster) == ["team-a", "team-b"]
    tuned = of_kind(objects(COMBINATIONS["tuned"]), "NetworkPolicy")
    weaviate_ports = [(p["protocol"], p["port"]) for p in tuned[0]["spec"]["egress"][3]["ports"]]
    assert weaviate_ports == [("TCP", 8080), ("TCP", 50051)]  # with memory.weaviateURL
    assert len(tuned[0]["spec"]["egress"]) == 5  # extraEgress appended


def test_metrics_service_and_service_monitor_select_the_operator() -> None:
    rendered = objects(COMBINATIONS["cluster"])
    (service,) = of_kind(rendered, "Service")
    (monitor,) = of_kind(rendered, "ServiceMonitor")
    (deployment,) = of_kind(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert not of_kind(objects({}), "ServiceMonitor")


def test_bring_your_own_identity_renders_no_rbac_service_account_or_policy() -> None:
    rendered = objects(COMBINATIONS["minimal"])
    assert {obj["kind"] for obj in rendered} == {"Deployment"}
    with pytest.raises(RuntimeError, match=r"serviceAccount\.name is required"):
        objects({"serviceAccount": {"create": False}})
