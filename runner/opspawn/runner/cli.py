"""`opspawn runner`: the command a runner Job runs."""

from __future__ import annotations

import os
import sys

import click

from opspawn.runner.lean_imports import refuse_aiohttp_unless_websocket


@click.command("runner")
@click.option(
    "--check-config",
    is_flag=True,
    help="Only validate the OPSPAWN_* environment, then exit (0: usable, 2: not).",
)
def runner(check_config: bool) -> None:
    """Carry out one attempt of an AgentTask, configured by OPSPAWN_* environment variables.

    Events go to NATS JetStream, the result also to the termination message; the exit code
    says how the attempt ended (see docs/runner.md).
    """
    from opspawn.runner.config import NATS_URL  # imports neither nats nor aiohttp

    # Before anything imports nats; the variable is checked properly with the rest later.
    refuse_aiohttp_unless_websocket(os.environ.get(NATS_URL, ""))
    from opspawn.runner.main import main

    sys.exit(main(check_config=check_config))
