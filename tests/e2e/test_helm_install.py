"""`helm install` on each target (`cluster`: the local control plane, and kind where Docker
exists): the chart's operator, under the chart's RBAC, runs an example AgentTask to `Succeeded`
in a namespace enforcing Pod Security `restricted`, and its identity can do nothing beyond what
the reconcile needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from opspawn.dev.helm import CHART, helm
from tests.conftest import Kubectl
from tests.e2e.conftest import ChartInstall, Cluster, StartChartOperator, poll

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "openai-tools.yaml"
TASK = "release-notes-summary"


def _pods(kubectl: Kubectl, namespace: str, selector: str) -> list[str]:
    listed = kubectl("get", "pods", "-l", selector, "-o", "name", namespace=namespace)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_chart_operator_runs_an_example_task_under_restricted_pod_security(
    cluster: Cluster,
    chart_install: ChartInstall,
    start_chart_operator: StartChartOperator,
) -> None:
    kubectl = cluster.kubectl
    # The Deployment's Pod passes `restricted` admission in the operator's namespace (on the
    # local target the process kubelet cannot start its image, so it is only admitted and
    # scheduled; on kind it runs the operator).
    poll(
        lambda: bool(
            _pods(
                kubectl,
                chart_install.namespace,
                f"app.kubernetes.io/instance={chart_install.release}",
            )
        ),
        30,
        "the operator Deployment's Pod admitted",
    )
    # `restricted` is enforced in the watched namespace: a Pod without a securityContext is refused.
    refused = kubectl(
        "run",
        "plain",
        "--image=busybox",
        "--restart=Never",
        "--dry-run=server",
        namespace=chart_install.watched,
    )
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr

    start_chart_operator()
    secret = kubectl(
        "create",
        "secret",
        "generic",
        "openai",
        "--from-literal=api-key=mock-key",
        namespace=chart_install.watched,
    )
    assert secret.returncode == 0, secret.stderr
    applied = kubectl("apply", "-f", str(EXAMPLE), namespace=chart_install.watched)
    assert applied.returncode == 0, applied.stderr

    waited = kubectl(
        "wait",
        "--for=condition=Succeeded",
        f"agenttask/{TASK}",
        "--timeout=90s",
        namespace=chart_install.watched,
    )
    task = json.loads(
        kubectl("get", "agenttask", TASK, "-o", "json", namespace=chart_install.watched).stdout
    )
    assert waited.returncode == 0, (
        f"{waited.stderr}\nstatus: {json.dumps(task.get('status'), indent=1)}"
    )
    assert task["status"]["phase"] == "Succeeded"
    assert task["status"]["steps"] >= 1
    usage = task["status"]["usage"]  # the mock model reports tokens; gpt-4.1-mini has a price
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0, usage
    assert usage["costUSD"] > 0, usage

    # The runner Pod ran in the restricted namespace with the runner NetworkPolicy beside it.
    assert _pods(kubectl, chart_install.watched, f"opspawn.io/task-name={TASK}")
    policy = kubectl(
        "get",
        "networkpolicy",
        f"{chart_install.release}-opspawn-runner",
        namespace=chart_install.watched,
    )
    assert policy.returncode == 0, policy.stderr

    # The audit store the chart's Secret names holds the task's history.
    environment = {**os.environ, "DATABASE_URL": cluster.host_database_url}

    def audited() -> bool:
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "opspawn.cli",
                "audit",
                "show",
                f"{chart_install.watched}/{TASK}",
                "-o",
                "json",
            ],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return shown.returncode == 0 and "Succeeded" in shown.stdout

    poll(audited, 20, "the task's attempt in the audit store")


ALLOWED = [
    ("get", "secrets"),
    ("create", "secrets"),
    ("create", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("watch", "agenttasks.opspawn.io"),
    ("list", "pods"),
    ("create", "events"),
]
DENIED_IN_WATCHED = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
    ("create", "pods"),
    ("get", "pods"),
    ("delete", "pods"),
    ("get", "pods/log"),
    ("create", "pods/exec"),
    ("get", "configmaps"),
    ("create", "agenttasks.opspawn.io"),
    ("update", "agenttasks.opspawn.io"),
    ("create", "deployments.apps"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
]


def _can(kubectl: Kubectl, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as `who`; `resource` may name a subresource (`pods/log`)."""
    resource, _, subresource = resource.partition("/")
    argv = ["auth", "can-i", verb, resource, f"--as={who}"]
    argv += [f"--subresource={subresource}"] if subresource else []
    argv += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    answer = kubectl(*argv)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


def test_operator_identity_is_least_privilege(
    cluster: Cluster, chart_install: ChartInstall
) -> None:
    kubectl = cluster.kubectl
    who, watched = chart_install.service_account, chart_install.watched
    for verb, resource in ALLOWED:
        assert _can(kubectl, who, verb, resource, watched), f"cannot {verb} {resource}"
    assert _can(kubectl, who, "patch", "agenttasks.opspawn.io/status", watched)
    for verb, resource in DENIED_IN_WATCHED:
        assert not _can(kubectl, who, verb, resource, watched), f"can {verb} {resource}"
    # Nothing outside the watched namespace: not its own, not kube-system, not cluster-wide.
    for namespace in (chart_install.namespace, "kube-system", "default", None):
        for verb, resource in [
            ("get", "secrets"),
            ("list", "agenttasks.opspawn.io"),
            ("create", "jobs.batch"),
        ]:
            assert not _can(kubectl, who, verb, resource, namespace), (
                f"can {verb} {resource} in {namespace}"
            )
    for verb, resource in [
        ("list", "namespaces"),
        ("get", "nodes"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ]:
        assert not _can(kubectl, who, verb, resource, None), f"can {verb} {resource}"


def test_aggregated_roles_give_users_agenttasks(
    cluster: Cluster, chart_install: ChartInstall
) -> None:
    kubectl = cluster.kubectl
    watched = chart_install.watched
    for user, role in (("alice", "edit"), ("bob", "view")):
        bound = kubectl(
            "create",
            "rolebinding",
            f"{user}-{role}",
            f"--clusterrole={role}",
            f"--user={user}",
            namespace=watched,
        )
        assert bound.returncode == 0, bound.stderr
    # The clusterrole-aggregation controller folds the chart's roles into edit and view.
    poll(
        lambda: _can(kubectl, "alice", "create", "agenttasks.opspawn.io", watched),
        30,
        "edit covers AgentTasks",
    )
    poll(
        lambda: _can(kubectl, "bob", "list", "agenttasks.opspawn.io", watched),
        30,
        "view covers AgentTasks",
    )
    assert not _can(kubectl, "bob", "create", "agenttasks.opspawn.io", watched)
    assert not _can(kubectl, "bob", "delete", "agenttasks.opspawn.io", watched)


def test_helm_upgrade_applies_new_values_and_refuses_typos(
    cluster: Cluster, chart_install: ChartInstall
) -> None:
    kubectl = cluster.kubectl

    def upgrade(*values: str) -> subprocess.CompletedProcess[str]:
        return helm(
            "upgrade",
            chart_install.release,
            str(CHART),
            "--namespace",
            chart_install.namespace,
            "--reuse-values",
            *values,
            kubeconfig=cluster.kubeconfig,
        )

    refused = upgrade("--set", "operator.wokers=3")
    assert refused.returncode != 0 and "'wokers' not allowed" in refused.stderr
    upgraded = upgrade("--set", "operator.workers=3")
    assert upgraded.returncode == 0, upgraded.stderr
    deployment = json.loads(
        kubectl(
            "get",
            "deployment",
            f"{chart_install.release}-opspawn",
            "-o",
            "json",
            namespace=chart_install.namespace,
        ).stdout
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OPSPAWN_OPERATOR_WORKERS"] == "3"
    assert env["OPSPAWN_OPERATOR_NAMESPACES"] == chart_install.watched  # reused


def test_cluster_wide_install_grants_the_operator_rules_everywhere_and_nothing_more(
    cluster: Cluster,
) -> None:
    kubectl = cluster.kubectl
    release = f"e2e-cluster-{uuid.uuid4().hex[:8]}"
    namespace = f"opspawn-{release.rsplit('-', 1)[1]}"
    created = kubectl("create", "namespace", namespace)
    assert created.returncode == 0, created.stderr
    installed = helm(
        "install", release, str(CHART), "--namespace", namespace, kubeconfig=cluster.kubeconfig
    )
    try:
        assert installed.returncode == 0, installed.stderr
        who = f"system:serviceaccount:{namespace}:{release}-opspawn"
        for verb, resource in [*ALLOWED, ("watch", "jobs.batch")]:
            for scope in ("kube-system", None):
                assert _can(kubectl, who, verb, resource, scope), f"cannot {verb} {resource}"
        for verb, resource in [*DENIED_IN_WATCHED, ("list", "namespaces"), ("get", "nodes")]:
            assert not _can(kubectl, who, verb, resource, None), f"can {verb} {resource}"
    finally:
        helm("uninstall", release, "--namespace", namespace, kubeconfig=cluster.kubeconfig)
        kubectl("delete", "namespace", namespace, "--wait=false")
