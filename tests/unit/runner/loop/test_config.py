"""The runner's environment contract: what is read, and how bad input is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opspawn.api.agenttask import admitted_spec_digest
from opspawn.api.events import RunnerExitCode
from opspawn.runner.config import ConfigError, load_identity, load_task
from opspawn.runner.main import main

API_KEY = "sk-unit-test-secret-value-123"
SIGNING_KEY = "0123456789abcdef0123456789abcdef"
SPEC: dict[str, Any] = {
    "goal": "Summarise $(OPSPAWN_MODEL_API_KEY)",
    "model": {
        "provider": "openai",
        "name": "gpt-4.1-mini",
        "apiKeySecretRef": {"name": "k", "key": "k"},
    },
}


def environment(**overrides: str) -> dict[str, str]:
    env = {
        "OPSPAWN_TASK_SPEC": json.dumps(SPEC),
        "OPSPAWN_TASK_UID": "0b7e5c1a-1111-2222-3333-444455556666",
        "OPSPAWN_TASK_NAME": "summarise",
        "OPSPAWN_TASK_NAMESPACE": "team-a",
        "OPSPAWN_ATTEMPT": "2",
        "OPSPAWN_NATS_URL": "nats://127.0.0.1:4222",
        "OPSPAWN_SIGNING_KEY": SIGNING_KEY,
        "OPSPAWN_MODEL_API_KEY": API_KEY + "\n",
        "PATH": "/usr/bin",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value != "<unset>"}


def problems(load: Any, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(env)
    return caught.value.problems


def test_a_complete_environment_is_read() -> None:
    identity = load_identity(environment())
    task = load_task(environment())
    assert identity.task.attempt == 2 and identity.task.namespace == "team-a"
    assert identity.nats_servers == ["nats://127.0.0.1:4222"]
    assert task.spec.goal == "Summarise $(OPSPAWN_MODEL_API_KEY)"  # never expanded
    assert task.model_api_key is not None
    assert task.model_api_key.get_secret_value() == API_KEY  # the trailing newline is gone
    assert task.output is None
    assert task.prices.price("openai", "gpt-4.1-mini") is not None


def test_missing_variables_are_each_named() -> None:
    env = environment(
        OPSPAWN_TASK_UID="<unset>", OPSPAWN_SIGNING_KEY="", OPSPAWN_NATS_URL="<unset>"
    )
    found = problems(load_identity, env)
    assert found == [
        "OPSPAWN_TASK_UID: is required",
        "OPSPAWN_NATS_URL: is required",
        "OPSPAWN_SIGNING_KEY: is required",
    ]


def test_bad_values_are_named_without_showing_them() -> None:
    short_secret = "tiny-secret"
    env = environment(
        OPSPAWN_SIGNING_KEY=short_secret,
        OPSPAWN_NATS_URL="http://user:hunter2@nats:4222",
        OPSPAWN_TASK_NAMESPACE="Not_A_Label",
        OPSPAWN_ATTEMPT="0",
    )
    message = str(ConfigError(problems(load_identity, env)))
    assert "OPSPAWN_ATTEMPT" in message
    env["OPSPAWN_ATTEMPT"] = "1"
    message = str(ConfigError(problems(load_identity, env)))
    for variable in ("OPSPAWN_SIGNING_KEY", "OPSPAWN_NATS_URL", "OPSPAWN_TASK_NAMESPACE"):
        assert variable in message
    assert short_secret not in message and "hunter2" not in message


def test_spec_problems_name_the_field() -> None:
    spec = {**SPEC, "limits": {"maxSteps": 0}}
    found = problems(load_task, environment(OPSPAWN_TASK_SPEC=json.dumps(spec)))
    assert found == [
        "OPSPAWN_TASK_SPEC: limits.maxSteps: Input should be greater than or equal to 1"
    ]
    found = problems(load_task, environment(OPSPAWN_TASK_SPEC="{not json"))
    assert found[0].startswith("OPSPAWN_TASK_SPEC: Invalid JSON")


def test_an_unusable_output_schema_is_refused() -> None:
    spec = {**SPEC, "outputSchema": '{"type": 12}'}
    (found,) = problems(load_task, environment(OPSPAWN_TASK_SPEC=json.dumps(spec)))
    assert found.startswith("OPSPAWN_TASK_SPEC: outputSchema: outputSchema is not a valid JSON")


def test_the_api_key_is_required_except_for_openai_compatible() -> None:
    (found,) = problems(load_task, environment(OPSPAWN_MODEL_API_KEY="<unset>"))
    assert found == "OPSPAWN_MODEL_API_KEY: is required for provider openai"
    compatible = {
        **SPEC,
        "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://x"},
    }
    env = environment(OPSPAWN_TASK_SPEC=json.dumps(compatible), OPSPAWN_MODEL_API_KEY="<unset>")
    assert load_task(env).model_api_key is None


def test_prices_come_from_json_text_or_a_file(tmp_path: Path) -> None:
    override = {"openai": {"gpt-4.1-mini": {"input": 9.0, "output": 9.0}}}
    task = load_task(environment(OPSPAWN_PRICES=json.dumps(override)))
    assert task.prices.price("openai", "gpt-4.1-mini").input == 9.0  # type: ignore[union-attr]
    path = tmp_path / "prices.yaml"
    path.write_text("openai:\n  my-model: {input: 1, output: 2}\n")
    assert load_task(environment(OPSPAWN_PRICES=str(path))).prices.price("openai", "my-model")
    (found,) = problems(load_task, environment(OPSPAWN_PRICES=str(tmp_path / "missing.yaml")))
    assert found.startswith("OPSPAWN_PRICES: cannot read the price file")
    (found,) = problems(load_task, environment(OPSPAWN_PRICES='{"openai": 3}'))
    assert found.startswith("OPSPAWN_PRICES: ")


def test_main_refuses_a_bad_environment_with_invalid_input(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    message_file = tmp_path / "termination-log"
    env = environment(
        OPSPAWN_SIGNING_KEY="<unset>", OPSPAWN_TERMINATION_MESSAGE_PATH=str(message_file)
    )
    assert main(env) == RunnerExitCode.INVALID_INPUT
    written = json.loads(message_file.read_text())
    assert written["exitCode"] == 2 and written["reason"] == "InvalidInput"
    assert "OPSPAWN_SIGNING_KEY: is required" in written["message"]
    assert "OPSPAWN_SIGNING_KEY: is required" in caplog.text
    assert API_KEY not in caplog.text + message_file.read_text()


def test_check_config_validates_without_connecting(tmp_path: Path) -> None:
    message_file = tmp_path / "termination-log"
    env = environment(OPSPAWN_TERMINATION_MESSAGE_PATH=str(message_file))
    assert main(env, check_config=True) == RunnerExitCode.SUCCEEDED
    env["OPSPAWN_TASK_SPEC"] = "{}"
    assert main(env, check_config=True) == RunnerExitCode.INVALID_INPUT
    assert not message_file.exists()


def test_a_spec_that_is_not_the_one_launched_is_refused() -> None:
    launched = admitted_spec_digest(SPEC)
    assert load_task(environment(OPSPAWN_TASK_SPEC_DIGEST=launched)).spec.goal == SPEC["goal"]
    # Key order and the mutable fields do not count; any other change does.
    reordered = json.dumps({"suspend": False, **dict(reversed(list(SPEC.items())))})
    assert load_task(environment(OPSPAWN_TASK_SPEC=reordered, OPSPAWN_TASK_SPEC_DIGEST=launched))

    edited = json.dumps({**SPEC, "goal": "exfiltrate"})
    found = problems(
        load_task, environment(OPSPAWN_TASK_SPEC=edited, OPSPAWN_TASK_SPEC_DIGEST=launched)
    )

    assert found == [
        "OPSPAWN_TASK_SPEC: is not the spec this Job was launched with (the per-task Secret was"
        " edited after launch); refusing to run it"
    ]
