"""The commands docs/local-stack.md gives for trying the chart on the real node, run as written
(`opspawn dev up --node real`, `helm install`, an example task to Succeeded, `opspawn dev down`),
in a scratch directory that links the repository's .venv, charts and manifests, so the stack's
`.opspawn/dev` is the test's own. Runs after the session's real node is gone (one per machine)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from opspawn.dev.realnode import host, network, prerequisites
from tests.e2e.conftest import REAL_GROUP, REAL_TIMEOUT, release_real_stacks

REPOSITORY = Path(__file__).resolve().parents[2]
DOC = REPOSITORY / "docs" / "local-stack.md"
HEADING = "### Trying the chart on the real node"
README = REPOSITORY / "README.md"
README_HEADING = "### The chart on a real node"


def documented_commands(path: Path = DOC, heading: str = HEADING) -> str:
    """The first sh block after `heading` in `path`."""
    text = path.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, f"no sh block under {heading!r} in {path}"
    return match.group(1)


def test_the_readme_gives_the_same_commands() -> None:
    assert documented_commands(README, README_HEADING) == documented_commands()


@pytest.mark.real_node_last
@pytest.mark.xdist_group(REAL_GROUP)
@pytest.mark.timeout(REAL_TIMEOUT)
def test_the_documented_commands_run_the_example_on_the_real_node(tmp_path: Path) -> None:
    reason = prerequisites.missing()
    if reason is not None:
        pytest.skip(reason)
    release_real_stacks()
    for name in (".venv", "charts", "manifests"):
        (tmp_path / name).symlink_to(REPOSITORY / name)
    environment = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DATABASE_URL")}
    try:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", documented_commands()],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=REAL_TIMEOUT - 60,
            check=False,
        )
    finally:
        subprocess.run(
            [str(REPOSITORY / ".venv" / "bin" / "opspawn"), "dev", "down"],
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert ran.returncode == 0, f"{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
    assert "condition met" in ran.stdout
    # `opspawn dev down` took the node away with everything it had put on the machine.
    assert host.processes_mentioning(str(tmp_path)) == []
    assert host.mounts_under(tmp_path) == []
    assert not network.bridge_exists()
    assert network.owned_rules() == []
    assert network.owned_ipsets() == []
