"""The AgentTask checks the CRD cannot make (CEL parses no JSON and measures no serialised
spec), as the operator and the runner apply them, and the one list of refused env names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from opspawn.api.agenttask import REFUSED_ENV_NAMES, SPEC_MAX_BYTES, AgentTaskSpec
from opspawn.api.output_schema import (
    MAX_DEPTH,
    OutputSchemaError,
    nesting_depth,
    parse_output_schema,
)
from opspawn.runner.output import OutputContract

BASE: dict[str, Any] = {
    "goal": "g",
    "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m:8000/v1"},
}


def _nested(levels: int) -> str:
    return '{"items":' * (levels - 1) + "{}" + "}" * (levels - 1)


def test_nesting_depth_counts_objects_and_arrays() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    assert nesting_depth(json.loads(_nested(500))) == 500


def test_an_output_schema_at_the_depth_limit_is_usable() -> None:
    assert parse_output_schema(_nested(MAX_DEPTH)) is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_nested(MAX_DEPTH + 1), "nested deeper than 32 levels"),
        ("[" * 4000 + "]" * 4000, "nested deeper than 32 levels"),  # json.loads recurses
        ('{"type": 12}', "not a valid JSON Schema"),
        ("[1]", "must be a JSON object"),
        ("{not json", "not JSON"),
    ],
    ids=["one-too-deep", "past-the-recursion-limit", "invalid", "not-an-object", "not-json"],
)
def test_an_unusable_output_schema_fails_spec_validation_with_the_reason(
    text: str, problem: str
) -> None:
    with pytest.raises(OutputSchemaError, match=problem):
        parse_output_schema(text)
    with pytest.raises(ValidationError) as refused:
        AgentTaskSpec.model_validate({**BASE, "outputSchema": text})
    (error,) = refused.value.errors()
    assert error["loc"] == ("outputSchema",) and problem in error["msg"]


def test_a_schema_that_refers_to_itself_is_a_problem_for_the_answer_not_a_crash() -> None:
    contract = OutputContract.parse('{"$ref": "#"}')
    checked = contract.check('{"a": 1}')
    assert not checked.valid and "refers to itself" in (checked.problem or "")


def test_an_answer_nested_past_the_recursion_limit_is_a_problem_not_a_crash() -> None:
    contract = OutputContract.parse('{"type": "object"}')
    checked = contract.check("[" * 100_000 + "]" * 100_000)
    assert not checked.valid


def test_a_spec_too_large_for_one_environment_variable_fails_validation() -> None:
    too_large = {**BASE, "runner": {"env": [{"name": f"V{i}", "value": "v"} for i in range(16)]}}
    too_large["goal"] = "\U0001f600" * 16_384  # the CRD's byte budget refuses this at apply
    too_large["context"] = "\U0001f600" * 8192
    too_large["inputs"] = {f"INPUT_{i}": "\U0001f600" * 512 for i in range(16)}
    assert AgentTaskSpec.model_validate({**BASE, "goal": "é" * 16_384})
    with pytest.raises(ValidationError, match=f"at most {SPEC_MAX_BYTES} fit"):
        AgentTaskSpec.model_validate(too_large)


REFUSED = [
    "OPSPAWN_NATS_URL",
    "OPSPAWN_MODEL_BASE_URL",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSLKEYLOGFILE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "AZURE_OPENAI_ENDPOINT",
    "OLLAMA_HOST",
    "NATS_URL",
    "WEAVIATE_API_KEY",
    "PYTHONPATH",
    "LD_PRELOAD",
    "HOSTALIASES",
    "NETRC",
]
ALLOWED = ["TZ", "LANG", "LC_ALL", "HOME", "MY_SETTING", "TEAM_PROXY_MODE", "OPSPAWNER"]


def _refused(name: str) -> list[str]:
    """The reasons the CRD gives for `name` (CEL `matches` is an RE2 search, as re.search)."""
    return [reason for pattern, reason in REFUSED_ENV_NAMES if re.search(pattern, name)]


@pytest.mark.parametrize("name", REFUSED)
def test_variables_that_redirect_keys_or_code_are_refused(name: str) -> None:
    assert _refused(name), f"{name} would be admitted in spec.runner.env"


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_variables_are_admitted(name: str) -> None:
    assert not _refused(name)
