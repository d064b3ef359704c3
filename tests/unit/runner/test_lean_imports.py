"""The runner leaves aiohttp unimported unless its NATS connection needs WebSockets."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from opspawn.runner.lean_imports import refuse_aiohttp_unless_websocket
refuse_aiohttp_unless_websocket(sys.argv[1])
import nats
from google import genai
import opspawn.runner.main
print(sys.modules.get("aiohttp") is not None)
"""


def _aiohttp_imported(nats_urls: str) -> bool:
    """Whether aiohttp ends up imported in a fresh process that starts like the runner."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, nats_urls], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip() == "True"


@pytest.mark.parametrize("urls", ["nats://nats:4222", "tls://a:4222, nats://b:4222", ""])
def test_tcp_connections_leave_aiohttp_out(urls: str) -> None:
    assert not _aiohttp_imported(urls)


@pytest.mark.parametrize("urls", ["ws://nats:8080", "nats://a:4222,wss://b:443"])
def test_websocket_connections_keep_aiohttp(urls: str) -> None:
    assert _aiohttp_imported(urls)
