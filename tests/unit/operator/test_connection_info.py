"""kopf logs in with the identity of the operator's own client, tokens included."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from opspawn.operator.kube import connection_info

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_kubeconfig_token_reaches_kopf(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: service-account-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
    )
    configuration = client.Configuration()
    await config.load_kube_config(str(kubeconfig), client_configuration=configuration)

    info = connection_info(configuration)

    assert (info.server, info.scheme, info.token) == (
        "https://127.0.0.1:6443",
        "Bearer",
        "service-account-token",
    )
    assert info.insecure
