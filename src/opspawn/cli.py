"""The `opspawn` command."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_DEV_DIR = Path(".opspawn/dev")
CRD_FILE = "agenttasks.opspawn.io.yaml"


class LazyGroup(click.Group):
    """A group whose listed subcommands are imported only when they are run, so that
    `opspawn runner` does not pay for the dev tools' imports (and works without them).
    The other commands import what they need when they run, for the same reason."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    lazy={
        "runner": "opspawn.runner.cli:runner",
        "operator": "opspawn.operator.cli:operator",
        "audit": "opspawn.operator.audit.cli:audit",
        "logs": "opspawn.operator.logs:logs",
    },
)
@click.version_option(package_name="opspawn")
def main() -> None:
    """Opspawn: run LLM agents as Kubernetes workloads."""


# --------------------------------------------------------------------------- crds


@main.group()
def crds() -> None:
    """The AgentTask CustomResourceDefinition, generated from the API models."""


@crds.command("print")
def crds_print() -> None:
    """Write the CRD YAML to standard output (e.g. `opspawn crds print | kubectl apply -f -`)."""
    from opspawn.api.crd import agenttask_crd, render_yaml

    click.echo(render_yaml(agenttask_crd()), nl=False)


@crds.command("generate")
@click.option(
    "--output-dir",
    "output_dirs",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    default=[Path("crds")],
    show_default=True,
    help="Where to write the CRD file (repeatable).",
)
def crds_generate(output_dirs: tuple[Path, ...]) -> None:
    """Regenerate the CRD file in each OUTPUT_DIR (what `make manifests` runs)."""
    from opspawn.api.crd import agenttask_crd, render_yaml

    text = render_yaml(agenttask_crd())
    for output_dir in output_dirs:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / CRD_FILE).write_text(text)
        click.echo(f"wrote {output_dir / CRD_FILE}")


# --------------------------------------------------------------------------- dev


dev_dir_option = click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DEV_DIR,
    show_default=True,
    help="Where the stack keeps its state, logs and env file.",
)


@main.group(
    cls=LazyGroup,
    lazy={"mock-model": "opspawn.fakes.cli:mock_model", "demo": "opspawn.dev.demo:demo"},
)
def dev() -> None:
    """The local stack: control plane, process kubelet, NATS, Postgres (dev/test only)."""


@dev.command("up")
@dev_dir_option
@click.option(
    "--weaviate/--no-weaviate",
    default=True,
    show_default=True,
    help="Run Weaviate for long-term memory (its first start builds weaviate-server).",
)
@click.option(
    "--node",
    type=click.Choice(["process", "real"]),
    default="process",
    show_default=True,
    help="process: the process kubelet and the operator as a local process. real (root): a real "
    "node (containerd, kubelet, kube-proxy, kube-router) with the project's image built and "
    "imported, no operator: install the chart (docs/local-stack.md, 'The real node').",
)
def dev_up(workdir: Path, weaviate: bool, node: str) -> None:
    """Start the stack in the background (idempotent) and write DIR/env.

    Control plane, process kubelet, NATS, Postgres, Weaviate, the mock model and the
    operator, which runs AgentTasks with the real runner against the mock model. With
    --node real: a real node instead of the process kubelet, no operator and no Weaviate."""
    from opspawn.dev.stack import DevStack, read_state, stop_recorded

    workdir = workdir.absolute()
    state = read_state(workdir)
    if state is not None:
        if state.all_alive:
            click.echo(f"the dev stack is already running; `source {workdir / 'env'}` to use it")
            return
        click.echo("a previous dev stack is partly running: stopping what is left of it", err=True)
        stop_recorded(workdir)
    if node == "real":
        from opspawn.dev.realnode.devup import start_real_node_stack

        stack, environment = start_real_node_stack(workdir)
    else:
        stack = DevStack(workdir, with_operator=True, with_weaviate=weaviate)
        environment = stack.start()
    stack.write_state()
    click.echo(f"the dev stack is up (logs in {workdir}):")
    for key, value in environment.items():
        if key != "PATH":
            click.echo(f"  {key}={value}")
    click.echo(f"use it from a shell with: source {workdir / 'env'}")


@dev.command("down")
@dev_dir_option
def dev_down(workdir: Path) -> None:
    """Stop every process of the stack."""
    from opspawn.dev.stack import stop_recorded

    stopped = stop_recorded(workdir.absolute())
    if stopped:
        click.echo(f"stopped {', '.join(stopped)}")
    else:
        click.echo("the dev stack is not running")


@dev.command("status")
@dev_dir_option
def dev_status(workdir: Path) -> None:
    """Show which processes of the stack are running; exit 1 unless all are."""
    from opspawn.dev.stack import read_state

    state = read_state(workdir.absolute())
    if state is None:
        click.echo("the dev stack is not running")
        sys.exit(1)
    for process in state.processes:
        shown = "running" if process.alive else "STOPPED"
        click.echo(f"{process.name:<26} {shown} (pgid {process.pgid})")
    sys.exit(0 if state.all_alive else 1)


@dev.command("env")
@dev_dir_option
def dev_env(workdir: Path) -> None:
    """Print the stack's environment as shell exports (`eval "$(opspawn dev env)"`)."""
    from opspawn.dev.stack import read_state

    state = read_state(workdir.absolute())
    if state is None:
        raise click.ClickException("the dev stack is not running: start it with `opspawn dev up`")
    for key, value in state.environment.items():
        click.echo(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
