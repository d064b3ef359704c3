"""`opspawn operator`: run the AgentTask operator.

Every option can also be set as an environment variable `OPSPAWN_OPERATOR_<OPTION>` (dashes as
underscores, e.g. `OPSPAWN_OPERATOR_RUNNER_IMAGE`); the Helm chart uses both.
"""

from __future__ import annotations

import asyncio
import logging
import shlex

import click

from opspawn.operator.lean_imports import refuse_unused_kubernetes_clients
from opspawn.operator.runner_job import RunnerSettings
from opspawn.operator.settings import ConcurrencyLimits, OperatorSettings


def _pairs(values: tuple[str, ...], option: str, shape: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, separator, rest = value.partition("=")
        if not separator or not key or not rest:
            raise click.BadParameter(f"{value!r} is not {shape}", param_hint=option)
        pairs[key] = rest
    return pairs


def _count(text: str, option: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"{text!r} is not a positive whole number", param_hint=option)
    return int(text)


@click.command("operator", context_settings={"auto_envvar_prefix": "OPSPAWN_OPERATOR"})
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Default: in-cluster, then $KUBECONFIG or ~/.kube/config.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Serve only these namespaces (repeatable); default: the whole cluster.",
)
@click.option(
    "--runner-image",
    default="ghcr.io/opspawn/opspawn:latest",
    show_default=True,
    help="Image of runner Jobs (a task's spec.runner.image overrides it).",
)
@click.option(
    "--runner-command",
    default="opspawn runner",
    show_default=True,
    help="Command of the runner container, split like a shell would.",
)
@click.option("--nats-url", required=True, help="NATS URL(s) the runners publish events to.")
@click.option(
    "--model-base-url",
    "model_base_urls",
    multiple=True,
    metavar="PROVIDER=URL",
    help="Send one provider's model calls here instead (repeatable; the dev and test stacks "
    "point them at the mock model).",
)
@click.option(
    "--weaviate-url",
    default=None,
    help="Weaviate REST URL for tasks with long-term memory (spec.memory.longTerm); without "
    "it those tasks go on without memory, or fail when they require it.",
)
@click.option(
    "--weaviate-grpc-address",
    default=None,
    metavar="HOST:PORT",
    help="Weaviate's gRPC endpoint (default: the URL's host, port 50051).",
)
@click.option(
    "--embedding-model",
    "embedding_models",
    multiple=True,
    metavar="PROVIDER=MODEL",
    help="Embed long-term memories with this model of the task's provider (repeatable; "
    "default: the runner's offline embedder).",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once, cluster-wide (default: unlimited).",
)
@click.option(
    "--max-running-per-namespace",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once per namespace (default: unlimited).",
)
@click.option(
    "--max-running-in-namespace",
    "namespace_limits",
    multiple=True,
    metavar="NAMESPACE=N",
    help="Override the per-namespace cap for one namespace.",
)
@click.option(
    "--max-running-per-model",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once per provider/model (default: unlimited).",
)
@click.option(
    "--database-url",
    envvar=["OPSPAWN_OPERATOR_DATABASE_URL", "DATABASE_URL"],
    default=None,
    help="Audit store (SQLAlchemy URL, e.g. postgresql://user@host/db); without it runner "
    "events are not consumed.",
)
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Bring the audit store's schema up to date at start.",
)
@click.option(
    "--stall-seconds",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Mark a running task Stalled after this long without a runner event (0: off).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Reconciles running at once (mostly waiting on the apiserver, so many are cheap).",
)
@click.option(
    "--deadline-grace-seconds",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Job activeDeadlineSeconds = task timeout + this.",
)
@click.option(
    "--termination-grace-seconds",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="terminationGracePeriodSeconds of runner Pods.",
)
@click.option(
    "--health-port",
    type=click.IntRange(min=0, max=65535),
    default=8080,
    show_default=True,
    help="Port of /metrics, /healthz, /readyz (0: off).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="One JSON object per line (for log collectors) or plain text (for a terminal).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="INFO",
    show_default=True,
    help="The least severe log records written.",
)
def operator(  # click passes every option by keyword
    *,
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    runner_image: str,
    runner_command: str,
    nats_url: str,
    model_base_urls: tuple[str, ...],
    weaviate_url: str | None,
    weaviate_grpc_address: str | None,
    embedding_models: tuple[str, ...],
    max_running: int | None,
    max_running_per_namespace: int | None,
    namespace_limits: tuple[str, ...],
    max_running_per_model: int | None,
    database_url: str | None,
    migrate: bool,
    stall_seconds: int,
    workers: int,
    deadline_grace_seconds: int,
    termination_grace_seconds: int,
    health_port: int,
    log_format: str,
    log_level: str,
) -> None:
    """Run the AgentTask operator: admit tasks, launch runner Jobs, keep status current."""
    refuse_unused_kubernetes_clients()  # before kopf is imported (see lean_imports)
    import kopf

    from opspawn.operator.main import run_operator

    kopf.configure(
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        verbose=log_level == "DEBUG",
    )
    logging.getLogger().setLevel(log_level)
    if log_level != "DEBUG":
        # kopf reports every event handler call at INFO; the reconcile logs what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = OperatorSettings(
        runner=RunnerSettings(
            image=runner_image,
            nats_url=nats_url,
            command=tuple(shlex.split(runner_command)),
            model_base_urls=_pairs(model_base_urls, "--model-base-url", "PROVIDER=URL"),
            termination_grace_seconds=termination_grace_seconds,
            deadline_grace_seconds=deadline_grace_seconds,
            weaviate_url=weaviate_url,
            weaviate_grpc_address=weaviate_grpc_address,
            embedding_models=_pairs(embedding_models, "--embedding-model", "PROVIDER=MODEL"),
        ),
        limits=ConcurrencyLimits(
            total=max_running,
            per_namespace=max_running_per_namespace,
            per_model=max_running_per_model,
            per_namespace_overrides={
                namespace: _count(limit, "--max-running-in-namespace")
                for namespace, limit in _pairs(
                    namespace_limits, "--max-running-in-namespace", "NAMESPACE=N"
                ).items()
            },
        ),
        namespaces=namespaces,
        database_url=database_url,
        migrate=migrate,
        stall_seconds=stall_seconds,
        workers=workers,
        health_port=health_port,
    )
    asyncio.run(run_operator(settings, kubeconfig))
