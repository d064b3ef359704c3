"""`opspawn operator`: run the AgentTask operator.

Every option can also be set as an environment variable `OPSPAWN_OPERATOR_<OPTION>` (dashes as
underscores, e.g. `OPSPAWN_OPERATOR_RUNNER_IMAGE`); the Helm chart uses both.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from opspawn.api.weaviate_address import GrpcAddressError, WeaviateAddress
from opspawn.operator.lean_imports import refuse_unused_kubernetes_clients
from opspawn.operator.nats_auth import NatsCredentialError, NatsIssuer
from opspawn.operator.runner_job import RunnerSettings
from opspawn.operator.settings import ConcurrencyLimits, OperatorSettings

IMAGE_REPOSITORY = "ghcr.io/opspawn/opspawn"
DEFAULT_RUNNER_IMAGE = f"{IMAGE_REPOSITORY}:{importlib.metadata.version('opspawn')}"
"""The image released with this version (the chart's appVersion): never a moving tag."""


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


def _nats_issuer(account: str | None, seed_file: str | None) -> NatsIssuer | None:
    """Who mints NATS users, from --nats-account and --nats-signing-key-file (both or none)."""
    if account is None and seed_file is None:
        return None
    if account is None or seed_file is None:
        raise click.BadParameter(
            "give both --nats-account and --nats-signing-key-file, or neither",
            param_hint="--nats-account",
        )
    try:
        return NatsIssuer.from_seed_text(account, Path(seed_file).read_bytes())
    except NatsCredentialError as error:
        raise click.BadParameter(str(error), param_hint="--nats-signing-key-file") from None


def _weaviate_admin_key_file(options: Mapping[str, Any]) -> Path | None:
    """The file with the root API key the operator provisions namespaces with
    (--weaviate-api-key-file): required with --weaviate-url, since runners must not reach
    Weaviate anonymously. It is read when the operator starts."""
    url, key_file = options["weaviate_url"], options["weaviate_api_key_file"]
    if url is None:
        return None
    try:
        WeaviateAddress.parse(url, options["weaviate_grpc_address"])
    except GrpcAddressError as error:
        raise click.BadParameter(str(error), param_hint="--weaviate-grpc-address") from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--weaviate-url") from None
    if key_file is None:
        raise click.BadParameter(
            "Weaviate must run with authentication and RBAC: give its root user's API key "
            "with --weaviate-api-key-file",
            param_hint="--weaviate-url",
        )
    return Path(key_file)


def settings_from_options(options: Mapping[str, Any]) -> OperatorSettings:
    """The operator's settings from the options `opspawn operator` parsed (click's params)."""
    return OperatorSettings(
        runner=RunnerSettings(
            image=options["runner_image"],
            nats_url=options["nats_url"],
            command=tuple(shlex.split(options["runner_command"])),
            model_base_urls=_pairs(options["model_base_urls"], "--model-base-url", "PROVIDER=URL"),
            termination_grace_seconds=options["termination_grace_seconds"],
            deadline_grace_seconds=options["deadline_grace_seconds"],
            weaviate_url=options["weaviate_url"],
            weaviate_grpc_address=options["weaviate_grpc_address"],
            embedding_models=_pairs(
                options["embedding_models"], "--embedding-model", "PROVIDER=MODEL"
            ),
            nats_issuer=_nats_issuer(options["nats_account"], options["nats_signing_key_file"]),
        ),
        limits=ConcurrencyLimits(
            total=options["max_running"],
            per_namespace=options["max_running_per_namespace"],
            per_model=options["max_running_per_model"],
            per_namespace_overrides={
                namespace: _count(limit, "--max-running-in-namespace")
                for namespace, limit in _pairs(
                    options["namespace_limits"], "--max-running-in-namespace", "NAMESPACE=N"
                ).items()
            },
        ),
        namespaces=options["namespaces"],
        weaviate_api_key_file=_weaviate_admin_key_file(options),
        database_url=options["database_url"],
        migrate=options["migrate"],
        stall_seconds=options["stall_seconds"],
        mirror_interval_seconds=options["status_interval_seconds"],
        mirror_writes_in_flight=options["status_writes_in_flight"],
        workers=options["workers"],
        health_port=options["health_port"],
    )


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
    default=DEFAULT_RUNNER_IMAGE,
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
    "--nats-account",
    help="Public key (A…) of the NATS account the operator mints users in; with "
    "--nats-signing-key-file it turns NATS auth on (per-task runner credentials).",
)
@click.option(
    "--nats-signing-key-file",
    type=click.Path(dir_okay=False, exists=True),
    help="File holding the seed (SA…) of the account's signing key (a mounted Secret).",
)
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
    "--weaviate-api-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File with the API key of a root user of Weaviate (required with --weaviate-url): "
    "the operator creates a user and role per namespace with it, and each namespace's "
    "runners get that namespace's key only.",
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
    default=OperatorSettings.stall_seconds,
    show_default=True,
    help="Mark a running task Stalled after this long without a runner event (0: off).",
)
@click.option(
    "--status-interval-seconds",
    type=click.FloatRange(min=0.05),
    default=OperatorSettings.mirror_interval_seconds,
    show_default=True,
    help="Rewrite a task's status from its runner's events at most this often.",
)
@click.option(
    "--status-writes-in-flight",
    type=click.IntRange(min=1),
    default=OperatorSettings.mirror_writes_in_flight,
    show_default=True,
    help="Status writes from runner events sent to the apiserver at once; the rest wait "
    "their turn, oldest first.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=OperatorSettings.workers,
    show_default=True,
    help="Reconciles running at once (mostly waiting on the apiserver, so many are cheap).",
)
@click.option(
    "--deadline-grace-seconds",
    type=click.IntRange(min=0),
    default=RunnerSettings.deadline_grace_seconds,
    show_default=True,
    help="Job activeDeadlineSeconds = task timeout + this.",
)
@click.option(
    "--termination-grace-seconds",
    type=click.IntRange(min=0),
    default=RunnerSettings.termination_grace_seconds,
    show_default=True,
    help="terminationGracePeriodSeconds of runner Pods.",
)
@click.option(
    "--health-port",
    type=click.IntRange(min=0, max=65535),
    default=OperatorSettings.health_port,
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
@click.pass_context
def operator(
    context: click.Context,
    /,
    *,
    kubeconfig: str | None,
    log_format: str,
    log_level: str,
    **_: object,  # the settings: read from `context.params` by `settings_from_options`
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
    asyncio.run(run_operator(settings_from_options(context.params), kubeconfig))
