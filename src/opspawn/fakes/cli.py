"""`opspawn dev mock-model`: run the fake model server in the foreground."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from opspawn.fakes.script import Script, default_script, load_script
from opspawn.fakes.server import FakeModelServer


@click.command("mock-model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--script",
    "script_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Script file (YAML or JSON, see docs/mock-model.md); default: call one tool, answer.",
)
def mock_model(host: str, port: int, script_path: Path | None) -> None:
    """Serve a scripted model over the OpenAI, Anthropic and Gemini APIs until stopped.

    Prints one line with the server's URL once it accepts connections.
    """
    try:
        script = load_script(script_path) if script_path else default_script()
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot load script {script_path}: {error}") from error
    asyncio.run(_serve(script, host, port))


async def _serve(script: Script, host: str, port: int) -> None:
    server = FakeModelServer(script, host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        click.echo(f"mock model listening on {server.url}", err=False)
        await stop.wait()
