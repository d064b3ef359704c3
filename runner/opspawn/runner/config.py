"""The runner's input: environment variables only (see docs/runner.md for the contract).

Everything comes from the environment, so one Job template runs unchanged on a real cluster
and on the process kubelet. Values may be plain `value`s or `valueFrom` Secret, ConfigMap or
field references; user text (the spec) must arrive through `valueFrom`, where Kubernetes does
not expand `$(VAR)`. The runner itself never expands anything either.

The input is read in two parts. The identity (task, attempt, NATS, signing key) is what the
runner needs to report at all; the task input (spec, model key, prices) is what it needs to
work. When only the task input is unusable, the runner can still publish why.

Errors name the variable and what is wrong with it, never its value (some are secrets, and a
URL can carry credentials).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, Json, SecretStr, ValidationError

from opspawn.api.agenttask import AgentTaskSpec, Provider, admitted_spec_digest
from opspawn.api.events import MIN_KEY_BYTES, SigningKey, TaskRef
from opspawn.api.weaviate_address import MAX_API_KEY_CHARS, GrpcAddressError, WeaviateAddress
from opspawn.runner.memory.endpoint import MemoryEndpoint
from opspawn.runner.output import OutputContract, OutputSchemaError

if TYPE_CHECKING:
    from opspawn.runner.model.pricing import PriceTable

TASK_SPEC = "OPSPAWN_TASK_SPEC"
TASK_SPEC_DIGEST = "OPSPAWN_TASK_SPEC_DIGEST"
TASK_UID = "OPSPAWN_TASK_UID"
TASK_NAME = "OPSPAWN_TASK_NAME"
TASK_NAMESPACE = "OPSPAWN_TASK_NAMESPACE"
ATTEMPT = "OPSPAWN_ATTEMPT"
POD_NAME = "OPSPAWN_POD_NAME"
NATS_URL = "OPSPAWN_NATS_URL"
NATS_CREDENTIALS = "OPSPAWN_NATS_CREDENTIALS"
SIGNING_KEY = "OPSPAWN_SIGNING_KEY"
MODEL_API_KEY = "OPSPAWN_MODEL_API_KEY"
MODEL_BASE_URL = "OPSPAWN_MODEL_BASE_URL"
PRICES = "OPSPAWN_PRICES"
WEAVIATE_URL = "OPSPAWN_WEAVIATE_URL"
WEAVIATE_GRPC_ADDRESS = "OPSPAWN_WEAVIATE_GRPC_ADDRESS"
WEAVIATE_API_KEY = "OPSPAWN_WEAVIATE_API_KEY"
EMBEDDING_MODEL = "OPSPAWN_EMBEDDING_MODEL"
LOG_LEVEL = "OPSPAWN_LOG_LEVEL"

NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
HTTP_URL = r"^https?://[^\s]+$"

_TASK_REF_VARIABLES = {
    "namespace": TASK_NAMESPACE,
    "task_name": TASK_NAME,
    "task_uid": TASK_UID,
    "attempt": ATTEMPT,
}


class ConfigError(ValueError):
    """The environment does not describe a usable run; `problems` name each variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        lines = "".join(f"\n  {problem}" for problem in self.problems)
        return f"invalid runner environment:{lines}"


class _Environment(BaseModel):
    """Base of the environment models: variables by name, values never shown in errors."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)


class _IdentityEnvironment(_Environment):
    task_uid: str = Field(alias=TASK_UID)
    task_name: str = Field(alias=TASK_NAME)
    task_namespace: str = Field(alias=TASK_NAMESPACE)
    attempt: int = Field(default=1, alias=ATTEMPT, ge=1)
    pod_name: str | None = Field(default=None, alias=POD_NAME, max_length=253)
    nats_url: str = Field(alias=NATS_URL)
    nats_credentials: SecretStr | None = Field(
        default=None, alias=NATS_CREDENTIALS, max_length=16384
    )
    signing_key: SecretStr = Field(alias=SIGNING_KEY)
    log_level: str = Field(default="INFO", alias=LOG_LEVEL, pattern="^(DEBUG|INFO|WARNING|ERROR)$")


class _TaskEnvironment(_Environment):
    spec: Json[AgentTaskSpec] = Field(alias=TASK_SPEC)
    spec_digest: str | None = Field(default=None, alias=TASK_SPEC_DIGEST, pattern="^[0-9a-f]{64}$")
    model_api_key: SecretStr | None = Field(default=None, alias=MODEL_API_KEY)
    model_base_url: str | None = Field(
        default=None, alias=MODEL_BASE_URL, max_length=2048, pattern=HTTP_URL
    )
    prices: str | None = Field(default=None, alias=PRICES)
    weaviate_url: str | None = Field(default=None, alias=WEAVIATE_URL, max_length=2048)
    weaviate_grpc_address: str | None = Field(
        default=None, alias=WEAVIATE_GRPC_ADDRESS, max_length=512
    )
    weaviate_api_key: SecretStr | None = Field(
        default=None, alias=WEAVIATE_API_KEY, max_length=MAX_API_KEY_CHARS
    )
    embedding_model: str | None = Field(
        default=None, alias=EMBEDDING_MODEL, max_length=256, pattern=r"^[\w./:-]+$"
    )


@dataclass(frozen=True)
class RunIdentity:
    """Which task attempt this is, and where its events go."""

    task: TaskRef
    nats_servers: list[str]
    nats_credentials: SecretStr | None
    """The task's NATS user (`.creds` text) the operator minted; None for a NATS without auth."""
    signing_key: SigningKey
    pod_name: str | None
    log_level: str


@dataclass(frozen=True)
class TaskInput:
    """What the task asks for, and the model credentials."""

    spec: AgentTaskSpec
    model_api_key: SecretStr | None
    model_base_url: str | None
    prices: PriceTable
    """The built-in price table with OPSPAWN_PRICES laid over it."""
    output: OutputContract | None
    """spec.outputSchema, parsed."""
    memory: MemoryEndpoint = field(default_factory=MemoryEndpoint)
    """Where long-term memory is kept, and which embedding model the provider offers."""


def _present(env: Mapping[str, str]) -> dict[str, str]:
    """The OPSPAWN_ variables that have a value (empty counts as unset), ends stripped."""
    return {
        name: value.strip()
        for name, value in env.items()
        if name.startswith("OPSPAWN_") and value.strip()
    }


def _problems(error: ValidationError, names: Mapping[str, str] | None = None) -> list[str]:
    """One line per error: the variable (and the path inside it), and the message."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item["loc"]]
        variable = (names or {}).get(loc[0], loc[0]) if loc else "environment"
        inside = ".".join(loc[1:])
        where = f"{variable}: {inside}" if inside else variable
        message = "is required" if item["type"] == "missing" else item["msg"]
        problems.append(f"{where}: {message}")
    return problems


def load_identity(env: Mapping[str, str]) -> RunIdentity:
    """The run's identity from `env`; ConfigError naming every unusable variable."""
    try:
        raw = _IdentityEnvironment.model_validate(_present(env))
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None
    problems: list[str] = []
    task: TaskRef | None = None
    try:
        task = TaskRef(
            namespace=raw.task_namespace,
            task_name=raw.task_name,
            task_uid=raw.task_uid,
            attempt=raw.attempt,
        )
    except ValidationError as error:
        problems += _problems(error, _TASK_REF_VARIABLES)
    servers = [server.strip() for server in raw.nats_url.split(",") if server.strip()]
    if not servers or not all(server.startswith(NATS_SCHEMES) for server in servers):
        problems.append(
            f"{NATS_URL}: must be a comma-separated list of {', '.join(NATS_SCHEMES)} URLs"
        )
    key = raw.signing_key.get_secret_value().encode()
    if len(key) < MIN_KEY_BYTES:
        problems.append(f"{SIGNING_KEY}: must be at least {MIN_KEY_BYTES} bytes long")
    if problems or task is None:
        raise ConfigError(problems)
    return RunIdentity(
        task=task,
        nats_servers=servers,
        nats_credentials=raw.nats_credentials,
        signing_key=SigningKey(key),
        pod_name=raw.pod_name,
        log_level=raw.log_level,
    )


def load_task(env: Mapping[str, str]) -> TaskInput:
    """The task input from `env`; ConfigError naming every unusable variable."""
    try:
        raw = _TaskEnvironment.model_validate(_present(env))
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None
    problems: list[str] = []
    spec = raw.spec
    if raw.spec_digest is not None and raw.spec_digest != admitted_spec_digest(
        json.loads(env[TASK_SPEC])
    ):
        problems.append(
            f"{TASK_SPEC}: is not the spec this Job was launched with (the per-task Secret"
            " was edited after launch); refusing to run it"
        )
    if spec.model.provider is not Provider.OPENAI_COMPATIBLE and raw.model_api_key is None:
        problems.append(f"{MODEL_API_KEY}: is required for provider {spec.model.provider.value}")
    output: OutputContract | None = None
    if spec.output_schema is not None:
        try:
            output = OutputContract.parse(spec.output_schema)
        except OutputSchemaError as error:
            problems.append(f"{TASK_SPEC}: outputSchema: {error}")
    prices: PriceTable | None = None
    try:
        prices = _price_table(raw.prices)
    except (OSError, ValueError) as error:
        problems.append(f"{PRICES}: {_describe(error)}")
    weaviate: WeaviateAddress | None = None
    if raw.weaviate_url is not None:
        try:
            weaviate = WeaviateAddress.parse(raw.weaviate_url, raw.weaviate_grpc_address)
        except GrpcAddressError as error:
            problems.append(f"{WEAVIATE_GRPC_ADDRESS}: {error}")
        except ValueError as error:
            problems.append(f"{WEAVIATE_URL}: {error}")
    if problems or prices is None:
        raise ConfigError(problems)
    return TaskInput(
        spec=spec,
        model_api_key=raw.model_api_key,
        model_base_url=raw.model_base_url,
        prices=prices,
        output=output,
        memory=MemoryEndpoint(
            weaviate=weaviate, api_key=raw.weaviate_api_key, embedding_model=raw.embedding_model
        ),
    )


def _price_table(value: str | None) -> PriceTable:
    """The built-in price table with OPSPAWN_PRICES laid over it: JSON text of a mapping
    (`{"openai": {"gpt-4.1-mini": {"input": 0.4, "output": 1.6}}}`), or the path of a YAML or
    JSON file with that shape."""
    from opspawn.runner.model.pricing import PriceTable

    if value is None:
        return PriceTable.builtin()
    if value.startswith("{"):
        return PriceTable.configured(json.loads(value))
    return PriceTable.configured(value)


def _describe(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(_problems(error))
    if isinstance(error, OSError):
        return f"cannot read the price file: {error.strerror or error}"
    return str(error)
