"""Where the runner finds Weaviate, and how a bad address is reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opspawn.api.weaviate_address import GrpcAddressError, WeaviateAddress
from opspawn.runner.config import ConfigError, load_task

SPEC: dict[str, Any] = {
    "goal": "g",
    "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m:1/v1"},
    "memory": {"longTerm": {"enabled": True, "collection": "TeamNotes"}},
}


def test_the_grpc_endpoint_defaults_to_the_url_host_on_port_50051() -> None:
    address = WeaviateAddress.parse("http://weaviate.memory.svc:8080")
    assert address == WeaviateAddress(
        "weaviate.memory.svc", 8080, False, "weaviate.memory.svc", 50051
    )


def test_https_means_tls_on_both_and_the_grpc_address_can_differ() -> None:
    address = WeaviateAddress.parse("https://weaviate.example", "weaviate-grpc.example:443")
    assert address == WeaviateAddress("weaviate.example", 443, True, "weaviate-grpc.example", 443)


@pytest.mark.parametrize("grpc", ["weaviate", "weaviate:port", ":50051", "weaviate:70000"])
def test_a_malformed_grpc_address_is_refused(grpc: str) -> None:
    with pytest.raises(GrpcAddressError):
        WeaviateAddress.parse("http://weaviate:8080", grpc)


def test_the_runner_reads_the_memory_endpoint_from_its_environment() -> None:
    task = load_task(
        {
            "OPSPAWN_TASK_SPEC": json.dumps(SPEC),
            "OPSPAWN_WEAVIATE_URL": "http://127.0.0.1:8080",
            "OPSPAWN_WEAVIATE_GRPC_ADDRESS": "127.0.0.1:50052",
            "OPSPAWN_EMBEDDING_MODEL": "text-embedding-3-small",
        }
    )
    assert task.memory.weaviate == WeaviateAddress("127.0.0.1", 8080, False, "127.0.0.1", 50052)
    assert task.memory.embedding_model == "text-embedding-3-small"


def test_a_bad_memory_endpoint_names_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_task(
            {
                "OPSPAWN_TASK_SPEC": json.dumps(SPEC),
                "OPSPAWN_WEAVIATE_URL": "ftp://user:secret@weaviate",
            }
        )
    (problem,) = caught.value.problems
    assert problem.startswith("OPSPAWN_WEAVIATE_URL: ")
    assert "secret" not in problem
