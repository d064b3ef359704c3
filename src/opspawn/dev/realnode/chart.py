"""Chart values that fit the real node: the locally built image (never pulled), and the runner
NetworkPolicy's NATS and model-endpoint rules pointed at the host services on the node's bridge
address. The e2e `real` target, `bench/realnode.py` and `opspawn dev up --node real` use them."""

from __future__ import annotations

from typing import Any


def real_node_values(
    image_reference: str, node_address: str, nats_port: int, model_ports: list[int]
) -> dict[str, Any]:
    repository, tag = image_reference.rsplit(":", 1)
    host = [{"ipBlock": {"cidr": f"{node_address}/32"}}]
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nats": {"url": f"nats://{node_address}:{nats_port}"},
        "networkPolicy": {
            "nats": {"to": host, "port": nats_port},
            "modelEndpoints": {"to": host, "ports": model_ports},
        },
    }
