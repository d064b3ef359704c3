"""`opspawn logs TASK`: a task's runner events from JetStream, from the first one on.

It reads the task's subject with an ephemeral ordered consumer (nothing is acked, the
operator's durable consumer is untouched) and prints one line per event. With `--follow` it
keeps printing until the task's current attempt reports `finished`.
"""

from __future__ import annotations

import asyncio
import json
import sys

import click
import nats
from nats.js.api import DeliverPolicy

from opspawn.api.events import STREAM_NAME, RunnerEvent, event_subject
from opspawn.operator.mirror import summarise


def _task_identity(
    namespace: str | None, name: str, kubeconfig: str | None
) -> tuple[str, str, int]:
    """(namespace, uid, current attempt) of the AgentTask, through the user's kubeconfig."""
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)
    if namespace is None:
        _, context = config.list_kube_config_contexts(config_file=kubeconfig)
        namespace = str(context.get("context", {}).get("namespace") or "default")
    api = client.CustomObjectsApi()
    try:
        task = api.get_namespaced_custom_object(
            "opspawn.io", "v1alpha1", namespace, "agenttasks", name
        )
    except client.ApiException as error:
        raise click.ClickException(
            f"cannot read AgentTask {namespace}/{name}: {error.status} {error.reason}"
        ) from None
    attempt = int((task.get("status") or {}).get("attempt") or 0)
    return namespace, str(task["metadata"]["uid"]), attempt


def format_event(event: RunnerEvent) -> str:
    return (
        f"{event.time.strftime('%H:%M:%S.%f')[:-3]}  #{event.attempt}.{event.sequence:<4} "
        f"{event.type.value:<12} {summarise(event)}"
    )


async def _print_events(
    nats_url: str, credentials: str | None, subject: str, attempt: int, follow: bool
) -> None:
    connection = await nats.connect(
        nats_url.split(","), **({"user_credentials": credentials} if credentials else {})
    )
    try:
        jetstream = connection.jetstream()
        subscription = await jetstream.subscribe(
            subject, stream=STREAM_NAME, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        while True:
            try:
                message = await subscription.next_msg(timeout=None if follow else 1.0)
            except TimeoutError:  # nats raises both its own and asyncio's
                return
            try:
                event = RunnerEvent.model_validate(json.loads(message.data))
            except ValueError:
                click.echo(f"(unreadable message of {len(message.data)} bytes)")
                continue
            click.echo(format_event(event))
            if follow and event.type.value == "finished" and event.attempt >= attempt:
                return
    finally:
        await connection.close()


@click.command("logs")
@click.argument("task")
@click.option("-n", "--namespace", default=None, help="Namespace (default: the context's).")
@click.option("-f", "--follow", is_flag=True, help="Wait for new events until the attempt ends.")
@click.option("--nats-url", envvar="NATS_URL", required=True, help="NATS URL ($NATS_URL).")
@click.option(
    "--nats-creds",
    envvar="NATS_CREDS",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="NATS credentials file of a user that may read the event stream ($NATS_CREDS).",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None)
def logs(
    *,
    task: str,
    namespace: str | None,
    follow: bool,
    nats_url: str,
    nats_creds: str | None,
    kubeconfig: str | None,
) -> None:
    """Print the runner events of TASK (NAME or NAMESPACE/NAME) from the event stream."""
    if "/" in task:
        namespace, task = task.split("/", 1)
    namespace, uid, attempt = _task_identity(namespace, task, kubeconfig)
    try:
        asyncio.run(
            _print_events(nats_url, nats_creds, event_subject(namespace, uid), attempt, follow)
        )
    except KeyboardInterrupt:
        sys.exit(130)
