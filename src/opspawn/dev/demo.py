"""`make demo` (`opspawn dev demo`): the local stack up, an example AgentTask run to its end.

It starts the dev stack (control plane, process kubelet, NATS, Postgres, mock model, operator)
or reuses a running one, creates the demo namespace and the API-key Secret, shows that an
invalid task is refused at `kubectl apply`, applies `manifests/examples/openai-tools.yaml`,
follows it to its outcome, prints its status, cost and audit trail, and how to look further.
With a provider's API key exported, the task runs on that provider (demo_model.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml
from kubernetes import client, config

from opspawn.dev.demo_model import DemoModel, choose_model
from opspawn.dev.demo_progress import Status, condition, cost, follow, outcome
from opspawn.dev.stack import DevStack, StackState, read_state, stop_recorded

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "manifests" / "examples" / "openai-tools.yaml"
NAMESPACE = "opspawn-demo"
GROUP, VERSION, PLURAL = "opspawn.io", "v1alpha1", "agenttasks"
FOLLOW_GRACE_SECONDS = 60
"""Following gives up this long after the task's own timeout."""

INVALID_TASK = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "AgentTask",
    "metadata": {"name": "invalid", "namespace": NAMESPACE},
    "spec": {
        "goal": "Fetch a page.",
        "model": {"provider": "openai", "name": "gpt-4.1-mini"},
        "tools": {"builtin": [{"name": "http_fetch"}]},
    },
}


def _step(text: str) -> None:
    click.echo(f"\n==> {text}")


def _indented(text: str) -> None:
    for line in text.rstrip().splitlines():
        click.echo(f"  {line}")


def _shown_path(path: Path) -> str:
    """`path` relative to the current directory when it is inside it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _routes_model_calls(state: StackState, model: DemoModel) -> bool:
    """Whether the running stack sends the model's calls where the demo needs them."""
    routed = state.model_base_urls.get(model.provider.name)
    if model.real:
        return routed == model.base_url
    mock = state.environment.get("OPSPAWN_MOCK_MODEL_URL")
    return bool(mock and routed and routed.startswith(mock))


def _stack(workdir: Path, model: DemoModel) -> dict[str, str]:
    """The environment of a running stack fit for `model`, started when there is none."""
    state = read_state(workdir)
    if state is not None and state.all_alive:
        if not _routes_model_calls(state, model):
            raise click.ClickException(
                f"the dev stack running in {_shown_path(workdir)} sends "
                f"{model.provider.name} calls elsewhere than this demo needs; stop it with "
                "`make dev-down` and run `make demo` again"
            )
        click.echo(f"  reusing the stack running in {_shown_path(workdir)}")
        return state.environment
    if state is not None:
        click.echo("  stopping what is left of an earlier stack")
        stop_recorded(workdir)
    click.echo("  (a first run also builds the control-plane binaries: a few minutes, once)")
    started = time.monotonic()
    endpoints = {model.provider.name: model.base_url} if model.real else {}
    stack = DevStack(workdir, with_operator=True, provider_endpoints=endpoints)
    environment = stack.start()
    stack.write_state()
    names = ", ".join(process.name for process in stack.processes())
    click.echo(f"  started in {time.monotonic() - started:.0f}s: {names}")
    return environment


def _kubectl(environment: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout + done.stderr


def _prepare_namespace(api: client.ApiClient, model: DemoModel) -> None:
    """The demo namespace (Pod Security `restricted`) with the model's API-key Secret."""
    core = client.CoreV1Api(api)
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE, "labels": labels}})
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise
    secret = model.key_secret(os.environ)
    name = secret["metadata"]["name"]
    try:
        core.create_namespaced_secret(NAMESPACE, secret)
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(name, NAMESPACE, secret)
    if model.real:
        click.echo(f"  secret/{name}: the key from ${model.key_variable} (never printed)")
    else:
        click.echo(f"  secret/{name}: a placeholder key (the mock model accepts any)")


def _read_task(custom: client.CustomObjectsApi, name: str) -> dict[str, Any] | None:
    try:
        task = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    except client.exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise
    return dict(task)


def _delete_earlier(custom: client.CustomObjectsApi, name: str, timeout: float = 60) -> None:
    """Delete the task of an earlier demo (its spec cannot change) and wait until it is gone."""
    if _read_task(custom, name) is None:
        return
    custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    deadline = time.monotonic() + timeout
    while _read_task(custom, name) is not None:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the earlier agenttask/{name} was not deleted")
        time.sleep(0.2)
    click.echo(f"  deleted agenttask/{name} of an earlier demo")


def _summary(status: Status, model_name: str) -> None:
    usage = status.get("usage") or {}
    reason = condition(status, "Succeeded").get("reason")
    priced = cost(status) or "unknown (no price for this model)"
    preview = (status.get("result") or {}).get("preview", "")
    click.echo(f"  outcome:  {status.get('phase')} ({reason})")
    click.echo(f"  attempt:  {status.get('attempt')} (Job {status.get('jobName')})")
    click.echo(f"  steps:    {status.get('steps', 0)}")
    click.echo(
        f"  tokens:   {usage.get('inputTokens', 0):,} in, {usage.get('outputTokens', 0):,} out"
    )
    click.echo(f"  cost:     {priced} for {model_name}, from the runner's price table")
    click.echo("  result:   " + ("\n            ".join(preview.splitlines()) or "(none)"))


def _hints(workdir: Path, name: str) -> None:
    ref = f"{NAMESPACE}/{name}"
    hints = [
        (f"source {_shown_path(workdir / 'env')}", "KUBECONFIG, NATS_URL, DATABASE_URL; PATH"),
        ("kubectl get agenttasks -A", "every task: phase, model, steps, tokens"),
        (f"kubectl describe agenttask {name} -n {NAMESPACE}", "conditions and Events"),
        ("opspawn audit list", "every task and attempt, from Postgres"),
        (f"opspawn audit show {ref}", "attempts, tokens, cost, the full result"),
        (f"opspawn audit events {ref}", "the timeline above"),
        (f"opspawn logs {ref}", "the same events, from JetStream"),
        ("kubectl explain agenttask.spec", "the API (also docs/crd-reference.md)"),
        ("make dev-down", "stop the stack"),
    ]
    width = max(len(command) for command, _ in hints)
    for command, meaning in hints:
        click.echo(f"  {command:<{width}}   # {meaning}")


def run_demo(workdir: Path) -> bool:
    """The whole demo; whether the task succeeded."""
    model = choose_model(os.environ)
    _step(f"Model: {model.describe()}")

    _step("The local stack: control plane, process kubelet, NATS, Postgres, mock model, operator")
    environment = {**os.environ, **_stack(workdir, model)}
    api = config.new_client_from_config(config_file=environment["KUBECONFIG"])
    try:
        custom = client.CustomObjectsApi(api)
        _step(f"Namespace {NAMESPACE} (Pod Security restricted) and the model's API-key Secret")
        _prepare_namespace(api, model)

        _step("An invalid AgentTask is refused at `kubectl apply`, naming the fields")
        _indented(_kubectl(environment, "apply", "-f", "-", stdin=json.dumps(INVALID_TASK)))

        task = yaml.safe_load(EXAMPLE.read_text())
        written = task["spec"]["model"]
        task["spec"]["model"] = model.spec_model(written)
        name = task["metadata"]["name"]
        changed = "" if task["spec"]["model"] == written else " (with the model above)"
        _step(f"Applying {EXAMPLE.relative_to(ROOT)}{changed}")
        _delete_earlier(custom, name)
        _indented(
            _kubectl(environment, "apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(task))
        )

        _step("Following it: time, phase, steps, tokens, cost, last event")
        timeout = task["spec"].get("limits", {}).get("timeoutSeconds", 600) + FOLLOW_GRACE_SECONDS
        try:
            status = follow(lambda: (_read_task(custom, name) or {}).get("status") or {}, timeout)
        except TimeoutError as error:
            raise click.ClickException(f"{error}; see {_shown_path(workdir)}/*.log") from error
    finally:
        api.close()

    _step("Final status")
    _indented(_kubectl(environment, "get", "agenttasks", "-n", NAMESPACE))
    click.echo("")
    _summary(status, f"{task['spec']['model']['provider']}/{task['spec']['model']['name']}")

    _step(f"The audit trail in Postgres: opspawn audit events {NAMESPACE}/{name}")
    audit = subprocess.run(
        [sys.executable, "-m", "opspawn.cli", "audit", "events", f"{NAMESPACE}/{name}"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    _indented(audit.stdout + audit.stderr)

    _step("Look further")
    _hints(workdir, name)
    return outcome(status) == "Succeeded"


@click.command("demo")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".opspawn/dev"),
    show_default=True,
    help="Where the stack keeps its state, logs and env file.",
)
def demo(workdir: Path) -> None:
    """Bring the local stack up and run an example AgentTask to its end (`make demo`).

    With OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY (GOOGLE_API_KEY) exported, the
    task runs on that provider (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL
    change its endpoint); otherwise the mock model answers. Exits 1 unless the task succeeds.
    """
    if not run_demo(workdir.absolute()):
        sys.exit(1)
