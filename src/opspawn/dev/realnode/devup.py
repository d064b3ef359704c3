"""`opspawn dev up --node real`: the dev stack on a real node, ready for `helm install`.

Besides the stack (control plane, real node, NATS, Postgres, the mock model, no operator) it
builds and imports the project's image and writes two files under `<workdir>/real-node/`:

- `install.yaml`: namespaces `opspawn-system` and `agents` (Pod Security `restricted`) and, in
  `opspawn-system`, the Secrets the chart reads: the audit store's DSN and NATS's account key and
  signing key (the same credentials the stack's own files hold);
- `values.yaml`: the chart's values for this node (`chart.real_node_values`), serving `agents`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from opspawn.dev.image import build_project_image
from opspawn.dev.realnode import prerequisites
from opspawn.dev.realnode.chart import real_node_values
from opspawn.dev.stack import DevStack

SYSTEM_NAMESPACE = "opspawn-system"
AGENTS_NAMESPACE = "agents"
AUDIT_SECRET = "opspawn-audit"  # noqa: S105 - a Secret's name
NATS_AUTH_SECRET = "opspawn-nats-auth"  # noqa: S105 - a Secret's name
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def start_real_node_stack(workdir: Path) -> tuple[DevStack, dict[str, str]]:
    """Start the stack with a real node (no Weaviate: runners there have no route to it yet);
    its environment, as `DevStack.start()` returns it."""
    reason = prerequisites.missing()
    if reason is not None:
        raise RuntimeError(reason)
    image = build_project_image()
    stack = DevStack(workdir, node="real", with_mock_model=True)
    environment = stack.start()
    try:
        node, nats, postgres = stack.real_node, stack.nats, stack.postgres
        if node is None or nats is None or postgres is None or stack.mock_model_url is None:
            raise RuntimeError("the real-node stack started without its node or services")
        node.import_image(image.archive)
        mock_port = int(stack.mock_model_url.rsplit(":", 1)[1])
        files = workdir / "real-node"
        model = f"http://{node.address}:{mock_port}"
        values = {
            **real_node_values(image.reference, node.address, nats.port, [mock_port]),
            "watchNamespaces": [AGENTS_NAMESPACE],
            "auditStore": {"existingSecret": AUDIT_SECRET},
            "runner": {
                "modelBaseURLs": {
                    "openai": f"{model}/v1",
                    "openai-compatible": f"{model}/v1",
                    "anthropic": model,
                    "google": model,
                }
            },
        }
        secrets: dict[str, Any] = {
            AUDIT_SECRET: {"url": postgres.url.replace("127.0.0.1", node.address)}
        }
        if nats.trust is not None:
            values["nats"]["auth"] = {"existingSecret": NATS_AUTH_SECRET}
            secrets[NATS_AUTH_SECRET] = {
                "account": nats.trust.account_public_key,
                "signing-key": nats.signing_key_file.read_text(),
            }
        (files / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        install = files / "install.yaml"
        install.write_text(yaml.safe_dump_all(_install_objects(secrets), sort_keys=False))
        install.chmod(0o600)
    except BaseException:
        stack.stop()
        raise
    return stack, environment


def _install_objects(secrets: dict[str, Any]) -> list[dict[str, Any]]:
    namespaces = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": RESTRICTED},
        }
        for name in (SYSTEM_NAMESPACE, AGENTS_NAMESPACE)
    ]
    return namespaces + [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
            "stringData": data,
        }
        for name, data in secrets.items()
    ]
