"""The AgentTask resource (opspawn.io/v1alpha1): spec and status as pydantic models.

These models are the single source of the CRD in `crds/` (see `opspawn.api.crd`): every field's
description becomes what `kubectl explain` prints, every bound becomes an OpenAPI bound the
apiserver enforces, and the CEL rules declared here are enforced at `kubectl apply`.

Size: kopf keeps a copy of the spec in an annotation, and all annotations of an object share a
256 KiB cap, so every string and list here is bounded; `tests/unit/test_crd.py` checks that the
largest spec the schema admits stays well below that cap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

GROUP = "opspawn.io"
VERSION = "v1alpha1"
KIND = "AgentTask"
PLURAL = "agenttasks"
SINGULAR = "agenttask"
SHORT_NAMES = ("at",)
CATEGORIES = ("opspawn",)
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
TOOL_NAME = r"^[a-zA-Z0-9_][-a-zA-Z0-9_.]*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters."""
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
RESOURCE_NAME = (
    r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+(Ki|Mi|Gi|k|M|G)?"
    r"|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
)
"""A container resource: cpu, memory, ephemeral-storage, hugepages-<size>, or an extended
resource with a domain prefix (e.g. nvidia.com/gpu)."""
OVERCOMMITTABLE_RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""Resources whose request may be below their limit; for the others they must be equal."""
IMAGE_REFERENCE = r"^[^\s]+$"
NO_CONTROL_CHARACTERS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Free text: any character but DEL and the C0 controls other than tab, newline and carriage
return (JSON writes those as six-byte escapes, no model needs them, and a NUL cannot be part of
a process's argument or environment at all)."""

MAX_ARG_STRLEN = 128 * 1024
"""Linux's cap on one environment variable, `NAME=value` and its NUL included."""

SPEC_MAX_BYTES = MAX_ARG_STRLEN - 64
"""The spec as JSON (UTF-8) at most: it reaches the runner as one environment variable
(OPSPAWN_TASK_SPEC). The CRD's text budget (SPEC_TEXT_MAX_BYTES) keeps the specs it admits
below this in practice; a spec over it anyway fails validation in the operator (Accepted=False,
InvalidSpec) before any Job is made, instead of a runner that cannot start."""

NAME_MAX_LENGTH = 63
"""metadata.name at most: the name is a label value on the runner Job and Pods (63 at most),
and the Job's and per-task Secret's names are cut from it."""

SPEC_TEXT_MAX_BYTES = 48 * 1024
"""UTF-8 bytes of the spec's free text (goal, context, inputs, outputSchema) together at most.

The spec reaches the runner as one environment variable (SPEC_MAX_BYTES); JSON escaping at
most doubles free text without control characters, which leaves the rest of the spec about
30 KiB. A spec that still does not fit is refused by the operator (SPEC_MAX_BYTES)."""

REFUSED_ENV_NAMES: tuple[tuple[str, str], ...] = (
    (r"^OPSPAWN_", "names starting with OPSPAWN_ are reserved for the runner's own settings"),
    (
        r"(?i)(^|_)PROXY$",
        "proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY ...) would route the"
        " runner's connections, and its keys, through another host",
    ),
    (
        r"(?i)^(SSL_|SSLKEYLOGFILE$|REQUESTS_CA_BUNDLE$|CURL_CA_BUNDLE$|NODE_EXTRA_CA_CERTS$"
        r"|GRPC_|OPENSSL_)",
        "TLS trust and key-log variables (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, SSLKEYLOGFILE ...)"
        " would let another host read the runner's encrypted traffic",
    ),
    (
        r"(?i)^(OPENAI|ANTHROPIC|GOOGLE|GEMINI|VERTEXAI|NATS|WEAVIATE|HF|HUGGINGFACE)_",
        "provider and service SDK settings (endpoints, keys, headers) come from spec.model"
        " and the operator, not from env",
    ),
    (
        r"(?i)(_BASE_URL|_API_BASE|_API_URL|_ENDPOINT|_HOST)$",
        "endpoint variables would send the runner's requests, and its keys, to another host",
    ),
    (
        r"(?i)^(PYTHON|LD_)|^(HOSTALIASES|LOCALDOMAIN|RES_OPTIONS|NETRC)$",
        "variables that change which code the runner loads or how it resolves hosts are refused",
    ),
)
"""`spec.runner.env` names refused at apply (RE2 patterns, as CEL runs them), with the reason
the apiserver gives. The runner does not honour such variables either: it builds its clients
with explicit endpoints and ignores proxy and CA variables (docs/runner.md)."""

RESULT_PREVIEW_MAX_CHARS = 4096
"""How much of the result the status keeps; the full result lives in the audit store."""

ATTEMPTS_HISTORY_MAX = 20
"""How many attempts `status.attempts` remembers (the audit store keeps them all)."""

Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "isQuantity(string(self))"
                    " && !quantity(string(self)).isLessThan(quantity('0'))",
                    "message": "must be a non-negative Kubernetes quantity such as 500m, 1, 256Mi",
                }
            ],
        }
    ),
]
"""A Kubernetes resource quantity such as `500m`, `1`, `256Mi`."""


def rule(
    expression: str,
    message: str,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One CEL validation rule, as it appears under `x-kubernetes-validations`."""
    out: JsonDict = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def defaulted(model: type[ApiModel]) -> JsonDict:
    """Schema extra giving an object field the model's own defaults as its default, so the
    apiserver fills the whole object in when it is omitted (and CEL rules see every field)."""
    return {"default": model().model_dump(mode="json", by_alias=True, exclude_none=True)}


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


# --------------------------------------------------------------------------- spec: model


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    OPENAI_COMPATIBLE = "openai-compatible"


class ToolCalling(StrEnum):
    NATIVE = "native"
    REACT = "react"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the task's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret, in the AgentTask's namespace."""
    key: str = Field(min_length=1, max_length=253, pattern=DATA_KEY)
    """Key within the Secret whose value is used."""


class ModelSpec(ApiModel):
    """Which model carries out the task, and how it is called."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.provider == 'openai-compatible' ? has(self.baseURL) : !has(self.baseURL)",
                    "baseURL is required for provider openai-compatible and not allowed otherwise",
                    field_path=".baseURL",
                ),
                rule(
                    "self.provider == 'openai-compatible' || has(self.apiKeySecretRef)",
                    "apiKeySecretRef is required for providers openai, anthropic and google",
                    field_path=".apiKeySecretRef",
                    reason="FieldValueRequired",
                ),
                rule(
                    "self.toolCalling == 'native' || self.provider == 'openai-compatible'",
                    "toolCalling: react is only available for provider openai-compatible",
                    field_path=".toolCalling",
                ),
                rule(
                    "self.provider != 'anthropic' || !has(self.temperature)"
                    " || self.temperature <= 1.0",
                    "temperature must be at most 1.0 for provider anthropic",
                    field_path=".temperature",
                ),
            ]
        }
    )

    provider: Provider
    """Model provider: openai, anthropic, google, or openai-compatible (any server that speaks
    the OpenAI Chat Completions API, e.g. OpenRouter, vLLM, Ollama; set baseURL)."""
    name: str = Field(min_length=1, max_length=256)
    """Model name as the provider knows it, e.g. gpt-4.1-mini, claude-sonnet-4-5,
    gemini-2.5-flash."""
    base_url: str | None = Field(
        default=None,
        alias="baseURL",
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "isURL(self) && url(self).getScheme() in ['http', 'https']",
                    "baseURL must be an http or https URL",
                )
            ]
        },
    )
    """Base URL of an openai-compatible server, e.g. http://vllm.models.svc:8000/v1."""
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, alias="apiKeySecretRef")
    """Secret key holding the provider API key. The key reaches the runner only as a
    secretKeyRef; it never appears in the spec, status, events, logs or audit trail."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature."""
    top_p: float | None = Field(default=None, alias="topP", ge=0, le=1)
    """Nucleus sampling probability mass."""
    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    """Upper bound on tokens generated per model call."""
    tool_calling: ToolCalling = ToolCalling.NATIVE
    """How tools are offered to the model: native (the provider's tool-calling API) or react
    (a text protocol, for openai-compatible models without native tool calling)."""


# --------------------------------------------------------------------------- spec: tools


class BuiltinToolName(StrEnum):
    HTTP_FETCH = "http_fetch"
    CALCULATOR = "calculator"
    CURRENT_TIME = "current_time"
    REMEMBER = "remember"
    RECALL = "recall"


class BuiltinTool(ApiModel):
    """A built-in tool the model may call. Tools not listed are refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.name == 'http_fetch' ? "
                    "(has(self.allowedHosts) && size(self.allowedHosts) > 0)"
                    " : !has(self.allowedHosts)",
                    "allowedHosts is required (non-empty) for http_fetch"
                    " and not allowed for other tools",
                    field_path=".allowedHosts",
                ),
                rule(
                    "self.name == 'http_fetch' || !has(self.maxResponseBytes)",
                    "maxResponseBytes applies only to http_fetch",
                    field_path=".maxResponseBytes",
                ),
            ]
        }
    )

    name: BuiltinToolName
    """Tool name: http_fetch, calculator, current_time, remember, recall."""
    allowed_hosts: (
        list[
            Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=253,
                    pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$",
                ),
            ]
        ]
        | None
    ) = Field(default=None, max_length=16)
    """http_fetch only: hosts it may reach (exact, or *.example.com for subdomains)."""
    max_response_bytes: int | None = Field(default=None, ge=1, le=10_485_760)
    """http_fetch only: responses larger than this are cut (default 1 MiB)."""
    timeout_seconds: int = Field(default=30, ge=1, le=600)
    """Time limit for one call of this tool."""


class McpServer(ApiModel):
    """An MCP server whose tools the model may call, restricted to an allow-list."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "has(self.url) != has(self.command)",
                    "exactly one of url (streamable HTTP) or command (stdio) must be set",
                )
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Name of this server within the task; tools are exposed as <name>__<tool>."""
    url: str | None = Field(
        default=None,
        max_length=1024,
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "isURL(self) && url(self).getScheme() in ['http', 'https']",
                    "url must be an http or https URL",
                )
            ]
        },
    )
    """Streamable HTTP endpoint of the server, e.g. http://mcp-github.tools.svc:8080/mcp."""
    command: (
        list[Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CONTROL_CHARACTERS)]]
        | None
    ) = Field(default=None, min_length=1, max_length=8)
    """Command that starts a stdio server inside the runner container (it must exist in the
    runner image)."""
    allowed_tools: list[Annotated[str, Field(min_length=1, max_length=64, pattern=TOOL_NAME)]] = (
        Field(min_length=1, max_length=32)
    )
    """Tools of this server the model may call; every other tool is refused and recorded."""
    timeout_seconds: int = Field(default=60, ge=1, le=600)
    """Time limit for one tool call on this server."""


class ToolsSpec(ApiModel):
    """Tools the model may call. Default-deny: nothing is allowed unless listed here."""

    builtin: list[BuiltinTool] = Field(
        default_factory=list,
        max_length=5,
        json_schema_extra={
            "default": [],
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    """Built-in tools, at most once each."""
    mcp_servers: list[McpServer] = Field(
        default_factory=list,
        max_length=4,
        json_schema_extra={
            "default": [],
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    """MCP servers and the tools allowed on each."""
    max_parallel_calls: int = Field(default=4, ge=1, le=16)
    """How many tool calls of one model turn run at once."""


# --------------------------------------------------------------------------- spec: memory


class ShortTermMemory(ApiModel):
    """The conversation window the model sees."""

    max_tokens: int = Field(default=32_000, ge=1_000, le=2_000_000)
    """When the conversation grows past this many tokens, older turns are compacted."""


class LongTermMemory(ApiModel):
    """Long-term memory in Weaviate, one tenant per namespace."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "!self.enabled || has(self.collection)",
                    "collection is required when long-term memory is enabled",
                    field_path=".collection",
                    reason="FieldValueRequired",
                )
            ]
        }
    )

    enabled: bool = False
    """Recall relevant memories at start and offer the remember/recall tools."""
    collection: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Z][A-Za-z0-9_]*$"
    )
    """Weaviate collection (capitalised, e.g. TeamNotes)."""
    top_k: int = Field(default=5, ge=1, le=50)
    """How many memories are recalled at most."""
    min_similarity: float = Field(default=0.5, ge=0, le=1)
    """Memories less similar than this to the goal are not recalled."""
    ttl_seconds: int | None = Field(default=None, ge=60, le=31_536_000)
    """Memories written by this task expire after this long (default: never)."""
    required: bool = False
    """Fail the task when the memory store is unavailable, instead of going on without it."""


class MemorySpec(ApiModel):
    """Short- and long-term memory."""

    short_term: ShortTermMemory = Field(
        default_factory=ShortTermMemory, json_schema_extra=defaulted(ShortTermMemory)
    )
    """Conversation window."""
    long_term: LongTermMemory = Field(
        default_factory=LongTermMemory, json_schema_extra=defaulted(LongTermMemory)
    )
    """Long-term store."""


# --------------------------------------------------------------------------- spec: limits, retry


class LimitsSpec(ApiModel):
    """Budgets: the first one reached stops the agent loop (not the pod) with its reason."""

    max_steps: int = Field(default=20, ge=1, le=1000)
    """Model turns at most."""
    timeout_seconds: int = Field(default=600, ge=10, le=86_400)
    """Wall-clock limit for one attempt; also the Job's activeDeadlineSeconds."""
    max_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    """Input plus output tokens at most, over the whole run."""
    max_cost_usd: float | None = Field(default=None, alias="maxCostUSD", ge=0, le=10_000)
    """Spend at most this many US dollars (needs a known price for the model)."""
    max_repeated_tool_calls: int = Field(default=3, ge=2, le=100)
    """Stop as stalled when the model makes the same tool call this many times in a row."""
    max_output_repairs: int = Field(default=2, ge=0, le=10)
    """Turns allowed to repair a result that does not match outputSchema."""


class BackoffSpec(ApiModel):
    """Delay between attempts: doubles from initialSeconds up to maxSeconds."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.initialSeconds <= self.maxSeconds",
                    "initialSeconds must not exceed maxSeconds",
                    field_path=".initialSeconds",
                )
            ]
        }
    )

    initial_seconds: int = Field(default=10, ge=1, le=3600)
    """Delay before the first retry."""
    max_seconds: int = Field(default=300, ge=1, le=86_400)
    """Longest delay between attempts."""


class RetrySpec(ApiModel):
    """Retries for infrastructure failures (runner lost, evicted, transient exit codes) only;
    a model that gives up is not retried."""

    limit: int = Field(default=2, ge=0, le=10)
    """Retries after the first attempt."""
    backoff: BackoffSpec = Field(
        default_factory=BackoffSpec, json_schema_extra=defaulted(BackoffSpec)
    )
    """Delay between attempts."""


# --------------------------------------------------------------------------- spec: runner


def _label_key_prefix_rule(key: str) -> JsonDict:
    """The prefix of a label key (before `/`) has at most 253 characters."""
    return rule(
        f"!{key}.contains('/') || {key}.indexOf('/') <= 253",
        "the prefix of a label key (before /) must be at most 253 characters",
    )


_OVERCOMMITTABLE = "[" + ", ".join(f"'{name}'" for name in OVERCOMMITTABLE_RESOURCES) + "]"
ResourceName = Annotated[str, Field(max_length=317, pattern=RESOURCE_NAME)]


class ResourceRequirements(ApiModel):
    """Compute resources of the runner container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "!has(self.requests) || !has(self.limits) || self.requests.all(name,"
                    " !(name in self.limits) || quantity(string(self.requests[name]))"
                    ".compareTo(quantity(string(self.limits[name]))) <= 0)",
                    "requests must not exceed limits",
                    field_path=".requests",
                ),
                rule(
                    "!has(self.requests) || self.requests.all(name,"
                    f" name in {_OVERCOMMITTABLE} || (has(self.limits) && name in self.limits"
                    " && quantity(string(self.requests[name]))"
                    ".compareTo(quantity(string(self.limits[name]))) == 0))",
                    "extended resources and hugepages cannot be overcommitted: a request needs"
                    " an equal limit",
                    field_path=".requests",
                ),
                rule(
                    "!((has(self.requests) && self.requests.exists(n, n.startsWith('hugepages-')))"
                    " || (has(self.limits) && self.limits.exists(n, n.startsWith('hugepages-'))))"
                    " || (has(self.requests)"
                    " && ('cpu' in self.requests || 'memory' in self.requests))"
                    " || (has(self.limits) && ('cpu' in self.limits || 'memory' in self.limits))",
                    "hugepages need a cpu or memory request or limit as well",
                    field_path=".limits",
                ),
                rule(
                    "!has(self.limits) || self.limits.all(name,"
                    f" name in {_OVERCOMMITTABLE} || name.startsWith('hugepages-')"
                    " || quantity(string(self.limits[name])).isInteger())",
                    "extended resources must be whole numbers",
                    field_path=".limits",
                ),
            ]
        }
    )

    requests: dict[ResourceName, Quantity] | None = Field(default=None, max_length=8)
    """Minimum resources, e.g. {cpu: 100m, memory: 256Mi}."""
    limits: dict[ResourceName, Quantity] | None = Field(default=None, max_length=8)
    """Maximum resources."""


class Toleration(ApiModel):
    """A toleration of the runner Pod (as in the Pod spec)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "value must be empty when operator is Exists",
                    field_path=".value",
                ),
                rule(
                    "self.operator == 'Exists' || (has(self.key) && self.key != '')",
                    "key is required unless operator is Exists",
                    field_path=".key",
                    reason="FieldValueRequired",
                ),
                rule(
                    "!has(self.tolerationSeconds)"
                    " || (has(self.effect) && self.effect == 'NoExecute')",
                    "tolerationSeconds applies only to effect NoExecute",
                    field_path=".tolerationSeconds",
                ),
            ]
        }
    )

    key: str | None = Field(
        default=None,
        max_length=317,
        pattern=LABEL_KEY,
        json_schema_extra={"x-kubernetes-validations": [_label_key_prefix_rule("self")]},
    )
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0, le=86_400)
    """For NoExecute: how long the Pod stays bound after the taint appears."""


class EnvVar(ApiModel):
    """An extra environment variable of the runner container. The value is passed literally:
    `$(VAR)` references are not expanded."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=ENV_VAR_NAME,
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(f"!self.matches(r'{pattern}')", reason)
                for pattern, reason in REFUSED_ENV_NAMES
            ]
        },
    )
    """Variable name. Names that could change where the runner connects, whom it trusts or
    what code it loads are refused: OPSPAWN_*, *_PROXY, SSL_*, REQUESTS_CA_BUNDLE, provider
    SDK variables (OPENAI_*, ANTHROPIC_*, GOOGLE_* ...), *_BASE_URL, *_ENDPOINT, PYTHON*,
    LD_*."""
    value: str = Field(default="", max_length=256, pattern=NO_CONTROL_CHARACTERS)
    """Variable value."""


class RunnerSpec(ApiModel):
    """How the runner Pod is built."""

    image: str | None = Field(default=None, min_length=1, max_length=512, pattern=IMAGE_REFERENCE)
    """Runner image reference (e.g. registry.example.com/opspawn:1.2); defaults to the
    operator's configured image."""
    resources: ResourceRequirements | None = None
    """Resources of the runner container."""
    service_account_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    """ServiceAccount of the runner Pod (the runner needs no Kubernetes API access)."""
    node_selector: (
        dict[
            Annotated[str, Field(max_length=317, pattern=LABEL_KEY)],
            Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)],
        ]
        | None
    ) = Field(
        default=None,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.all(key, !key.contains('/') || key.indexOf('/') <= 253)",
                    "the prefix of a label key (before /) must be at most 253 characters",
                )
            ]
        },
    )
    """Node labels the runner Pod must land on."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=8)
    """Tolerations of the runner Pod."""
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables."""


# --------------------------------------------------------------------------- spec


MUTABLE_SPEC_FIELDS = ("cancel", "suspend", "priority", "ttlSecondsAfterFinished")
"""Spec fields that may change after creation; every other field is immutable."""


def admitted_spec_digest(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the spec's immutable fields, in a canonical JSON form: what the apiserver
    admitted, whatever the key order or the mutable fields (`cancel`, `suspend` …) say now.

    The operator puts it on the runner's Job as a literal (a Job's Pod template cannot be
    edited), and the runner compares it with the spec it reads from the per-task Secret, which
    users of the namespace can edit: a spec edited after launch is refused, not run."""
    immutable = {name: value for name, value in spec.items() if name not in MUTABLE_SPEC_FIELDS}
    canonical = json.dumps(immutable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


IMMUTABLE_MESSAGE = "{} is immutable once the task is created; create a new AgentTask instead"


def metadata_schema() -> JsonDict:
    """The CRD's schema for metadata: the one restriction Kubernetes allows there, on name."""
    return {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": NAME_MAX_LENGTH,
                "description": f"At most {NAME_MAX_LENGTH} characters: the name labels the"
                " runner Job and its Pods.",
            }
        },
    }


def immutable_field_rule(name: str) -> JsonDict:
    """The transition rule on an immutable spec field (the CRD puts it on the field itself).

    The apiserver evaluates every rule on every write, status writes included, and rules on a
    field are evaluated only where the field is set: one cheap comparison per set field rather
    than a rule per field on the spec (which cost a third of a status write's CPU)."""
    return rule("self == oldSelf", IMMUTABLE_MESSAGE.format(name), reason="FieldValueForbidden")


def _presence_rule(optional: list[str]) -> JsonDict:
    """One rule on the spec refusing to add or remove an optional immutable field (a rule on
    the field itself never sees it added or removed); its message names the first such field."""
    first_changed = "".join(
        f"has(self.{name}) != has(oldSelf.{name}) ? '{name}' : " for name in optional
    )
    out = rule(
        " && ".join(f"has(self.{name}) == has(oldSelf.{name})" for name in optional),
        IMMUTABLE_MESSAGE.format("an optional field"),
        reason="FieldValueForbidden",
    )
    out["messageExpression"] = f"({first_changed}'a field') + {IMMUTABLE_MESSAGE.format('')!r}"
    return out


IMMUTABLE_FIELDS = {
    "goal": True,
    "context": False,
    "inputs": False,
    "outputSchema": False,
    "model": True,
    "tools": False,
    "memory": False,
    "limits": False,
    "retry": False,
    "runner": False,
    "queue": False,
}
"""Immutable spec fields (wire names), each with whether it is required."""


_SPEC_TEXT_BYTES = (
    "size(bytes(self.goal))"
    " + (has(self.context) ? size(bytes(self.context)) : 0)"
    " + (has(self.outputSchema) ? size(bytes(self.outputSchema)) : 0)"
    " + (has(self.inputs) ? self.inputs.map(k, size(k) + size(bytes(self.inputs[k]))).sum() : 0)"
)
"""CEL: the UTF-8 bytes of the spec's free text (input names are ASCII)."""


class AgentTaskSpec(ApiModel):
    """What the agent is asked to do, with which model, tools and budgets."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _presence_rule(
                    [name for name, required in IMMUTABLE_FIELDS.items() if not required]
                ),
                rule(
                    "!oldSelf.cancel || self.cancel",
                    "cancel cannot be undone once set",
                    field_path=".cancel",
                    reason="FieldValueForbidden",
                ),
                {
                    # Measured at create only (the text is immutable), not on every status write.
                    **rule(
                        f"oldSelf.hasValue() || {_SPEC_TEXT_BYTES} <= {SPEC_TEXT_MAX_BYTES}",
                        f"the spec's text (goal, context, inputs and outputSchema together) must"
                        f" be at most {SPEC_TEXT_MAX_BYTES} bytes in UTF-8",
                        reason="FieldValueInvalid",
                    ),
                    "optionalOldSelf": True,
                },
                rule(
                    "!has(self.tools.builtin)"
                    " || !self.tools.builtin.exists(t, t.name in ['remember', 'recall'])"
                    " || (has(self.memory) && self.memory.longTerm.enabled)",
                    "the remember and recall tools need memory.longTerm.enabled: true",
                    field_path=".tools.builtin",
                ),
            ]
        }
    )

    goal: str = Field(min_length=1, max_length=16_384, pattern=NO_CONTROL_CHARACTERS)
    """The instruction the agent carries out."""
    context: str | None = Field(default=None, max_length=8192, pattern=NO_CONTROL_CHARACTERS)
    """Background the model is given along with the goal."""
    inputs: (
        dict[
            Annotated[str, Field(min_length=1, max_length=63, pattern=ENV_VAR_NAME)],
            Annotated[str, Field(max_length=512, pattern=NO_CONTROL_CHARACTERS)],
        ]
        | None
    ) = Field(default=None, max_length=16)
    """Named input values, available to the model next to the goal."""
    output_schema: str | None = Field(
        default=None,
        max_length=8192,
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    r"self.matches('^\\s*\\{')",
                    "outputSchema must be a JSON Schema object written as JSON text",
                )
            ]
        },
    )
    """JSON Schema (as JSON text) the result must match; the result is then structured JSON.
    It may nest at most 32 levels; a schema that is not valid is refused with Accepted=False
    (InvalidSpec) before any runner starts."""
    model: ModelSpec
    """Model provider, name, sampling parameters and API key reference."""
    tools: ToolsSpec = Field(default_factory=ToolsSpec, json_schema_extra=defaulted(ToolsSpec))
    """Built-in tools and MCP servers the model may call (default: none)."""
    memory: MemorySpec = Field(default_factory=MemorySpec, json_schema_extra=defaulted(MemorySpec))
    """Short- and long-term memory."""
    limits: LimitsSpec = Field(default_factory=LimitsSpec, json_schema_extra=defaulted(LimitsSpec))
    """Budgets that stop the agent loop."""
    retry: RetrySpec = Field(default_factory=RetrySpec, json_schema_extra=defaulted(RetrySpec))
    """Retries for infrastructure failures."""
    runner: RunnerSpec | None = None
    """Runner Pod settings: image, resources, scheduling, extra env."""
    suspend: bool = False
    """While true, the task is not started (a running attempt is stopped and resumed later)."""
    cancel: bool = False
    """Set to true to cancel the task; its Job and Pods are deleted. Cannot be undone."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=2_592_000)
    """Delete the task this long after it finished (default: keep it)."""
    priority: int = Field(default=0, ge=-1000, le=1000)
    """Higher runs first when tasks are queued."""
    queue: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    """Queue (concurrency class); also passed to Kueue as kueue.x-k8s.io/queue-name."""

    @field_validator("output_schema")
    @classmethod
    def _usable_output_schema(cls, text: str | None) -> str | None:
        """A JSON Schema the runner can use (CEL cannot parse JSON, so this is checked here)."""
        if text is not None:
            from opspawn.api.output_schema import OutputSchemaError, check_output_schema

            try:
                check_output_schema(text)
            except OutputSchemaError as error:
                raise PydanticCustomError("output_schema", str(error)) from None
        return text

    @model_validator(mode="after")
    def _fits_one_environment_variable(self) -> AgentTaskSpec:
        """The spec as the runner receives it fits one environment variable."""
        size = len(self.model_dump_json(by_alias=True, exclude_none=True).encode())
        if size > SPEC_MAX_BYTES:
            raise PydanticCustomError(
                "spec_too_large",
                "the spec is {size} bytes as JSON; at most {limit} fit the runner's environment"
                " (shorten the goal, context, inputs, commands or hosts)",
                {"size": size, "limit": SPEC_MAX_BYTES},
            )
        return self


# --------------------------------------------------------------------------- status


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.TIMED_OUT})


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """An observation of the task's state, following Kubernetes API conventions."""

    type: str = Field(min_length=1, max_length=316)
    """Accepted, Queued, Running, Succeeded, Stalled, MemoryAvailable."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    """Machine-readable reason in CamelCase, e.g. Completed, BackoffLimitExceeded."""
    message: str = Field(default="", max_length=32_768)
    """Human-readable details."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was set for."""


class AttemptRecord(ApiModel):
    """One attempt (one runner Job)."""

    attempt: int = Field(ge=1)
    """Attempt number, from 1."""
    job_name: str = Field(max_length=63)
    """Runner Job of this attempt."""
    start_time: str | None = None
    """When the Job was created."""
    completion_time: str | None = None
    """When the attempt ended."""
    reason: str | None = Field(default=None, max_length=128)
    """How it ended, e.g. Completed, RunnerLost."""
    exit_code: int | None = None
    """Runner exit code, when known."""


class LastEvent(ApiModel):
    """The most recent runner event mirrored into status."""

    type: str = Field(max_length=32)
    """Event type (step, llm_call, tool_call …)."""
    sequence: int = Field(ge=0)
    """Sequence number within the attempt."""
    time: str
    """When the runner emitted it."""
    summary: str = Field(default="", max_length=256)
    """Short human-readable summary."""


class Usage(ApiModel):
    """Tokens and cost so far, over all attempts."""

    input_tokens: int = Field(default=0, ge=0)
    """Prompt tokens (including cached)."""
    output_tokens: int = Field(default=0, ge=0)
    """Generated tokens (including reasoning)."""
    cached_tokens: int = Field(default=0, ge=0)
    """Prompt tokens served from the provider's cache."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Reasoning tokens, where the provider reports them."""
    total_tokens: int = Field(default=0, ge=0)
    """inputTokens + outputTokens."""
    cost_usd: float | None = Field(default=None, alias="costUSD", ge=0)
    """Cost in US dollars; absent when the model's price is unknown."""


class ResultSummary(ApiModel):
    """A bounded preview of the result; the full result is in the audit store."""

    preview: str = Field(default="", max_length=RESULT_PREVIEW_MAX_CHARS)
    """The beginning of the result."""
    truncated: bool = False
    """True when the preview is shorter than the result."""
    size_bytes: int = Field(default=0, ge=0)
    """Size of the full result in bytes (UTF-8)."""
    sha256: str | None = Field(default=None, max_length=64)
    """SHA-256 of the full result, to check a copy fetched from the audit store."""


class AgentTaskStatus(ApiModel):
    """Observed state of the task, written by the operator."""

    phase: Phase | None = None
    """Pending, Queued, Running, Succeeded, Failed, Cancelled or TimedOut."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations; `kubectl wait --for=condition=Succeeded` waits on these."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the operator last acted on."""
    job_name: str | None = Field(default=None, max_length=63)
    """Runner Job of the current attempt."""
    attempt: int = Field(default=0, ge=0)
    """Current attempt number (0 before the first launch)."""
    attempts: list[AttemptRecord] = Field(default_factory=list, max_length=ATTEMPTS_HISTORY_MAX)
    """The most recent attempts."""
    retries: int = Field(default=0, ge=0)
    """Attempts that ended in an infrastructure failure (counted against spec.retry.limit)."""
    queue_position: int | None = Field(default=None, ge=0)
    """Position in the admission queue while Queued (0 runs next)."""
    start_time: str | None = None
    """When the first attempt started."""
    completion_time: str | None = None
    """When the task reached a terminal phase."""
    steps: int = Field(default=0, ge=0)
    """Agent-loop steps taken in the current attempt."""
    last_event: LastEvent | None = None
    """Most recent runner event."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and cost."""
    result: ResultSummary | None = None
    """Bounded preview of the result."""


class AgentTask(ApiModel):
    """An agent run: a goal for a model, with tools, memory and budgets, carried out by a
    runner Job."""

    api_version: Literal["opspawn.io/v1alpha1"] = Field(
        default="opspawn.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["AgentTask"] = "AgentTask"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AgentTaskSpec
    status: AgentTaskStatus | None = None
