"""An MCP stdio server is tenant code the runner starts (independent list, row 12): it tries to
read the runner's model key and signing key from its own environment, /proc/<runner>/environ,
/proc/<runner>/mem, /proc/<runner>/fd, ptrace, and every other process's environ.

The runner runs as uid 65532, as in its Pod (the tests run as root, where /proc would be open
anyway), so the protection tested is the kernel's. A control runs the same thief under a plain
parent holding the same keys, proving the thief finds them where nothing protects them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from opspawn.dev.nats import NatsServer
from opspawn.runner.key_custody import make_non_dumpable
from tests.integration.conftest import (  # noqa: F401 (fixtures used here)
    Serve,
    anyio_backend,
    event_stream,
    nats_server,
    serve,
)
from tests.integration.runner_loop.conftest import model_url, runner_env, task_spec
from tests.security.mcp_key_thief import NKEY_USER_SEED

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

RUNNER_UID = 65532
THIEF = Path(__file__).with_name("mcp_key_thief.py")
MODEL_KEY = "sk-thief-target-model-key-5e1f0a9c"
SIGNING_KEY = "signing-thief-target-3b7d2c8e41f6"
SECRETS = (MODEL_KEY, SIGNING_KEY)
PROC_VECTORS = ("parent_environ", "parent_mem", "parent_fds", "parent_ptrace")
SITE_PACKAGES = sysconfig.get_paths()["purelib"]
WITH_SITE = f"import runpy, site, sys; site.addsitedir({SITE_PACKAGES!r}); "


def _as_runner_uid() -> dict[str, Any]:
    return {"user": RUNNER_UID, "group": RUNNER_UID, "extra_groups": []}


def _runner_python() -> str:
    """An interpreter of this Python version that uid 65532 may execute: this one, unless it
    lives under a directory only root may enter (pyenv under /root), then the system's."""
    candidates = [
        sys.executable,
        shutil.which(
            f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/local/bin:/usr/bin"
        ),
    ]
    for candidate in filter(None, candidates):
        try:
            subprocess.run([candidate, "-c", ""], check=True, timeout=30, **_as_runner_uid())
        except (OSError, subprocess.CalledProcessError):
            continue
        return candidate
    pytest.skip(f"no Python {sys.version_info[0]}.{sys.version_info[1]} uid {RUNNER_UID} may run")


def _module_command(python: str, module: str) -> list[str]:
    """Run `module` with this virtualenv's packages, whichever interpreter runs it."""
    return [python, "-c", WITH_SITE + f"runpy.run_module({module!r}, run_name='__main__')"]


def _script_command(python: str, script: Path, *args: str) -> list[str]:
    code = WITH_SITE + "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    return [python, "-c", code, str(script), *args]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the runner's uid may reach and write (pytest's own tmp_path is root's
    alone), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="opspawn-runner-uid-") as name:
        path = Path(name)
        path.chmod(0o777)
        yield path


def _report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def _run_thief_under(parent_code: str, shared: Path) -> dict[str, Any]:
    """The thief as the child of a Python process of the runner's uid that holds both keys in
    its environment and runs `parent_code` first."""
    report = shared / "report.json"
    python = _runner_python()
    thief = _script_command(python, THIEF, str(report))
    script = f"{parent_code}\nimport subprocess\nsubprocess.run({thief!r}, check=True)"
    env = {
        "PATH": os.environ["PATH"],
        "OPSPAWN_MODEL_API_KEY": MODEL_KEY,
        "OPSPAWN_SIGNING_KEY": SIGNING_KEY,
        "THIEF_NO_SERVE": "1",
    }
    done = subprocess.run(
        [python, "-c", WITH_SITE + script],
        check=False,
        env=env,
        cwd=shared,
        capture_output=True,
        text=True,
        timeout=60,
        **_as_runner_uid(),
    )
    assert done.returncode == 0, done.stderr
    return _report(report)


def test_control_the_thief_finds_the_keys_of_an_unprotected_parent(shared_dir: Path) -> None:
    report = _run_thief_under("", shared_dir)

    assert report["uid"] == RUNNER_UID
    assert set(report["parent_environ"]["found"]) >= set(SECRETS), report
    assert report["parent_mem"]["ok"] and MODEL_KEY in report["parent_mem"]["found"]


def test_control_a_non_dumpable_parent_is_closed_even_to_its_own_uid(shared_dir: Path) -> None:
    assert make_non_dumpable.__module__ == "opspawn.runner.key_custody"  # what the child calls
    report = _run_thief_under(
        "from opspawn.runner.key_custody import make_non_dumpable; make_non_dumpable()",
        shared_dir,
    )

    for vector in PROC_VECTORS:
        assert not report[vector]["ok"], (vector, report[vector])


async def test_an_mcp_stdio_child_cannot_read_the_runners_keys(
    shared_dir: Path,
    serve: Serve,  # noqa: F811 (the fixture)
    nats_server: NatsServer,  # noqa: F811
    event_stream: NatsClient,  # noqa: F811 (the stream the runner publishes to)
) -> None:
    python = _runner_python()
    shared = shared_dir
    report_path = shared / "thief-report.json"
    server = await serve(
        {
            "turns": [
                {"tool_calls": [{"name": "thief__loot_report", "arguments": {}}]},
                {"text": "Nothing to see."},
            ]
        }
    )
    thief = {
        "name": "thief",
        "command": _script_command(python, THIEF, str(report_path)),
        "allowedTools": ["loot_report"],
    }
    spec = task_spec("openai", tools={"mcpServers": [thief]})
    env = runner_env(
        spec,
        nats_url=nats_server.url,
        model_url=model_url(server, "openai"),
        termination_path=shared / "termination",
    )
    env |= {"OPSPAWN_MODEL_API_KEY": MODEL_KEY, "OPSPAWN_SIGNING_KEY": SIGNING_KEY}
    # The task's NATS user, as the operator mints it into the per-task Secret.
    env["OPSPAWN_NATS_CREDENTIALS"] = nats_server.issuer.runner_credentials(
        env["OPSPAWN_TASK_NAMESPACE"], env["OPSPAWN_TASK_UID"], time.time() + 3600
    )
    (nats_seed,) = re.findall(NKEY_USER_SEED.decode(), env["OPSPAWN_NATS_CREDENTIALS"])
    runner = await asyncio.create_subprocess_exec(
        *_module_command(python, "opspawn.runner"),
        env=env,
        cwd=shared,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **_as_runner_uid(),
    )
    try:
        out, err = await asyncio.wait_for(runner.communicate(), 90)
    except TimeoutError:
        runner.kill()
        _, err = await runner.communicate()
        pytest.fail(f"the runner did not finish:\n{err.decode()[-3000:]}")
    assert runner.returncode == 0, err.decode()

    report = _report(report_path)
    assert report["uid"] == RUNNER_UID
    assert report["parent"] != os.getpid(), "the thief's parent is the runner"
    for vector in PROC_VECTORS:
        assert not report[vector]["ok"], (vector, report[vector])
    assert not any(name.startswith("OPSPAWN_") for name in report["own_environment"]["names"])
    text = json.dumps(report)
    for secret in (*SECRETS, nats_seed):
        assert secret not in text, "the thief found a key"
    # What the thief sent back through its tool reached the model: no key in it either.
    for request in server.requests:
        body = json.dumps(request.body)
        assert SIGNING_KEY not in body and MODEL_KEY not in body
    assert MODEL_KEY not in out.decode() + err.decode()
