"""The runner's second wall against `spec.runner.env` (independent list, row 11): the CRD
refuses endpoint, proxy, CA and OPSPAWN_ variables at apply (tests/integration/
test_agenttask_crd.py); here they reach the runner anyway (a task admitted before a name was
refused, a Job written by hand) and the attacker's server, named as the SDK's endpoint and as
every proxy, still receives nothing: the key goes to the configured endpoint only."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient

from opspawn.fakes import FakeModelServer
from tests.integration.conftest import (  # noqa: F401 (fixtures used here)
    Serve,
    anyio_backend,
    event_stream,
    nats_server,
    serve,
)
from tests.integration.runner_loop.conftest import (  # noqa: F401 (fixture used here)
    API_KEY,
    Run,
    start_runner,
    task_spec,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

ENDPOINT_VARIABLES = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "google": ("GOOGLE_GEMINI_BASE_URL",),
}
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY")


def _redirecting_env(provider: str, attacker: FakeModelServer) -> dict[str, str]:
    """Every variable that could send the provider call, and its key, to the attacker."""
    url = attacker.openai_base_url if provider == "openai" else attacker.url
    env = {name: url for name in ENDPOINT_VARIABLES[provider]}
    env |= {name: attacker.url for name in PROXY_VARIABLES}
    env["NO_PROXY"] = ""
    return env


@pytest.mark.parametrize("provider", sorted(ENDPOINT_VARIABLES))
async def test_endpoint_and_proxy_variables_do_not_redirect_the_model_key(
    provider: str,
    serve: Serve,  # noqa: F811 (the fixture)
    start_runner: Run,  # noqa: F811
    event_stream: NatsClient,  # noqa: F811 (the stream the runner publishes to)
) -> None:
    provider_server = await serve({"turns": [{"text": "Hello from the real endpoint."}]})
    attacker = await serve({"turns": [{"text": "Thanks for the key."}]})

    runner = await start_runner(
        task_spec(provider), provider_server, **_redirecting_env(provider, attacker)
    )

    assert await runner.finish() == 0, runner.stderr
    assert attacker.requests == [], "a request (and the key) reached the attacker's server"
    (request,) = provider_server.requests
    sent_key = request.headers.get("Authorization") or request.headers.get("x-api-key")
    sent_key = sent_key or request.headers.get("x-goog-api-key")
    assert sent_key is not None and API_KEY in sent_key
