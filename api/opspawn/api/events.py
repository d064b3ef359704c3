"""Runner events: the wire contract between the runner (publisher) and the operator (consumer).

Wire format
    Each event is one JSON object, UTF-8, camelCase keys, published as one JetStream message::

        {"schemaVersion": 1, "id": "<task-uid>/<attempt>/<sequence>", "taskUid": "...",
         "namespace": "team-a", "taskName": "summarise", "attempt": 1, "sequence": 7,
         "time": "2026-01-01T12:00:00.123456Z", "type": "tool_call", "payload": {...},
         "truncated": false, "signature": "<64 hex digits>"}

    `schemaVersion` changes whenever a change is not backwards compatible; a consumer refuses a
    version it does not know (validation fails) rather than guessing.

    Adding an event type is an additive change and keeps `schemaVersion` at 1: the events a
    consumer knows keep their shape and meaning. A consumer older than a type refuses the
    events of that type only (their `type` fails validation; the operator dead-letters them)
    and goes on with the rest, so upgrade the consumer (the operator) before the publisher
    (the runner image). Types added so far: `result_part` (the full text of a result too large
    for its `result` event; see `ResultPayload`). New values of a closed set are the same kind
    of change: the `memory` operations `expire` and `unavailable` (long-term memory).

Identity and ordering
    `sequence` starts at 1 for every attempt and increases by one per event. The `id` is derived
    from task uid, attempt and sequence, so the same logical event always carries the same id:
    it is the idempotency key of the audit store (a replay is dropped there).

    The JetStream `Nats-Msg-Id` header is `message_id`: an HMAC of the id under the task's
    signing key. A retried publish carries the same header (the server drops the duplicate
    inside the stream's window), but JetStream deduplicates per stream, across subjects, so a
    guessable header would let another tenant suppress a task's events by publishing their
    ids first; without the task's key nobody can compute it.

Subjects and stream
    Events of one task go to `opspawn.events.<namespace>.<task-uid>` (see `event_subject`). One
    stream, `STREAM_NAME`, with file storage captures `opspawn.events.>` (see `stream_subjects`);
    the operator creates it, the runner only publishes into it. A runner takes its JetStream
    publish acknowledgements under its own inbox prefix (`runner_inbox`); with NATS auth its
    credentials allow exactly its subject and that inbox (see `opspawn.operator.nats_auth`).

Reading
    `read_event_json` refuses, as unreadable, whatever is not strict UTF-8 JSON: duplicate
    keys, NaN/Infinity, numbers out of range or longer than `MAX_NUMBER_CHARS`, nesting deeper
    than `MAX_NESTING_DEPTH`. `verify_event` raises EventVerificationError and nothing else,
    whatever the bytes; `build_event` never produces an event the reader refuses.

Payload size
    The serialized payload of an event is capped (`payload_limit`: 64 KiB, 256 KiB for `result`
    and `result_part`). `build_event` enforces the cap by cutting the longest strings (marked
    with `TRUNCATION_MARKER`) and, if that is not enough, by turning the largest JSON value into
    its cut JSON text; the event then carries `truncated: true`. The full event is at most
    `MAX_EVENT_BYTES`, well below NATS's default 1 MiB message limit.

    The final result is the one payload that is never lost to the cap: when its `result` event
    is cut, `result_part` events that follow it carry the full text in slices of at most
    `RESULT_PART_BYTES` of serialized payload, which the cap never cuts (see `ResultPayload`
    and `result_parts`).

Signature
    HMAC-SHA256 with the task's key over the canonical serialization of the event without its
    `signature` member: JSON with sorted keys, no insignificant whitespace, non-ASCII characters
    kept as UTF-8, NaN/Infinity refused (`canonical_json`). The signature is the lowercase hex
    digest. The operator verifies with `verify_event` (constant-time comparison) before it
    believes anything in the event, so a runner cannot write into another task's history.

Runner exit codes (`RunnerExitCode`; the operator retries only the `retryable` ones)
    ====  ===================  =========  ===================================================
    code  name                 retried    meaning
    ====  ===================  =========  ===================================================
    0     SUCCEEDED            no         the goal was reached; the result is final
    1     FAILED               no         the agent could not reach the goal: the model gave
                                          up, stalled, or its output never matched
                                          outputSchema. (An unhandled Python exception also
                                          exits 1; the runner's entrypoint catches everything
                                          and maps it, so 1 always means "do not retry".)
    2     INVALID_INPUT        no         the runner's input or configuration is unusable
                                          (missing env, bad spec, unknown tool, bad key)
    3     BUDGET_EXHAUSTED     no         maxSteps, maxTokens or maxCostUSD was reached; the
                                          loop stopped cleanly, a partial result may exist
    4     TIMED_OUT            no         limits.timeoutSeconds was reached inside the loop
    70    INTERNAL_ERROR       no         a bug in the runner (EX_SOFTWARE)
    75    TRANSIENT            yes        infrastructure failed and may recover: model
                                          provider unreachable after its retries, NATS not
                                          acknowledging events before the deadline, an MCP
                                          server unavailable (EX_TEMPFAIL)
    137   KILLED               yes        SIGKILL: evicted, OOM-killed, or the grace period
                                          after SIGTERM ran out (set by the kernel)
    143   TERMINATED           yes        SIGTERM: the Pod was deleted, evicted or preempted
    ====  ===================  =========  ===================================================

    Any other exit code is treated as not retryable.

Termination message
    Whatever happens to NATS, the runner writes a `TerminationMessage` (JSON, at most 4096
    bytes, the kubelet's cap) to its termination-message file; the operator reads it from the
    Pod status. It is a bounded summary; the full result travels in the `result` event (and
    its `result_part` events).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

SCHEMA_VERSION: Final = 1
"""Version of the event schema that this module reads and writes."""

SUBJECT_PREFIX = "opspawn.events"
"""Every event subject starts with this; the task's namespace and uid follow."""

STREAM_NAME = "OPSPAWN_EVENTS"
"""The one JetStream stream that holds the events of every task."""

DUPLICATE_WINDOW_SECONDS = 600
"""Duplicate window the stream is created with: a publish retried within it is dropped."""

MSG_ID_HEADER = "Nats-Msg-Id"
"""JetStream header for server-side deduplication; it carries `SigningKey.message_id`."""

PAYLOAD_LIMIT_BYTES = 64 * 1024
"""Cap on the serialized payload of an event (except `result`)."""

RESULT_PAYLOAD_LIMIT_BYTES = 256 * 1024
"""Cap on the serialized payload of a `result` or `result_part` event."""

RESULT_PART_BYTES = 192 * 1024
"""Most bytes of serialized payload (canonical JSON) of one `result_part` event: well under
its cap, so `build_event` never cuts a part."""

MAX_EVENT_BYTES = 512 * 1024
"""Largest encoded event a consumer accepts."""

TRUNCATION_MARKER = "…[truncated]"
"""Appended to a string that was cut to fit a cap."""

MIN_KEY_BYTES = 16
"""Signing keys shorter than this are refused."""

MAX_NESTING_DEPTH = 64
"""Most levels of nested arrays and objects an event may have (the envelope counts as one)."""

MAX_NUMBER_CHARS = 64
"""Longest number literal an event may hold; no field needs more, and a long one costs time."""

TERMINATION_MESSAGE_MAX_BYTES = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""

_SUBJECT_SAFE = r"^[A-Za-z0-9][-A-Za-z0-9_]*$"
"""A NATS subject token we accept for namespace and uid: no dots, wildcards or spaces."""
_SUBJECT_TOKEN = re.compile(_SUBJECT_SAFE)
"""Compiled once: subjects are built and parsed for every event the operator receives."""

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HEX_SHA256 = r"^[0-9a-f]{64}$"
_SIGNATURE = re.compile(_HEX_SHA256)


class EventVerificationError(ValueError):
    """An event that must not be believed: unsigned, badly signed, malformed or misrouted."""


# --------------------------------------------------------------------------- exit codes


class RunnerExitCode(IntEnum):
    """Documented exit codes of the runner (see the module docstring for the table)."""

    SUCCEEDED = 0
    FAILED = 1
    INVALID_INPUT = 2
    BUDGET_EXHAUSTED = 3
    TIMED_OUT = 4
    INTERNAL_ERROR = 70
    TRANSIENT = 75
    KILLED = 137
    TERMINATED = 143

    @property
    def retryable(self) -> bool:
        """True for infrastructure failures that another attempt may get past."""
        return self in _RETRYABLE_EXIT_CODES

    @property
    def reason(self) -> str:
        """CamelCase reason for conditions and attempt records, e.g. `BudgetExhausted`."""
        return "".join(part.capitalize() for part in self.name.split("_"))


_RETRYABLE_EXIT_CODES = frozenset(
    {RunnerExitCode.TRANSIENT, RunnerExitCode.KILLED, RunnerExitCode.TERMINATED}
)


def exit_code_is_retryable(code: int) -> bool:
    """Whether the operator should start another attempt after a runner exited with `code`."""
    try:
        return RunnerExitCode(code).retryable
    except ValueError:
        return False


# --------------------------------------------------------------------------- subjects


def event_subject(namespace: str, task_uid: str) -> str:
    """The subject the events of one task are published on: `opspawn.events.<ns>.<uid>`."""
    for name, value in (("namespace", namespace), ("task uid", task_uid)):
        if not _SUBJECT_TOKEN.match(value):
            raise ValueError(f"{name} {value!r} cannot be a NATS subject token")
    return _subject(namespace, task_uid)


def _subject(namespace: str, task_uid: str) -> str:
    return f"{SUBJECT_PREFIX}.{namespace}.{task_uid}"


def parse_subject(subject: str) -> tuple[str, str]:
    """The (namespace, task uid) an event subject names; ValueError if it is not one."""
    prefix = SUBJECT_PREFIX + "."
    rest = subject.removeprefix(prefix)
    parts = rest.split(".")
    if rest == subject or len(parts) != 2 or not all(_SUBJECT_TOKEN.match(p) for p in parts):
        raise ValueError(f"{subject!r} is not an event subject ({prefix}<namespace>.<task-uid>)")
    return parts[0], parts[1]


def stream_subjects() -> list[str]:
    """Subjects of the event stream's configuration: every task of every namespace."""
    return [f"{SUBJECT_PREFIX}.>"]


def event_id(task_uid: str, attempt: int, sequence: int) -> str:
    """The deterministic id of the event with this sequence number in this attempt."""
    return f"{task_uid}/{attempt}/{sequence}"


RUNNER_INBOX_PREFIX = "_INBOX_RUNNER"
"""Runners take their replies (JetStream publish acks) under `<prefix>.<task-uid>`; their NATS
credentials allow them to subscribe there and nowhere else."""


def runner_inbox(task_uid: str) -> str:
    """The inbox prefix a task's runner connects with (nats-py's `inbox_prefix`)."""
    return f"{RUNNER_INBOX_PREFIX}.{task_uid}"


# --------------------------------------------------------------------------- canonical JSON, keys


def canonical_json(value: Any) -> bytes:
    """The canonical serialization that signatures are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


_MESSAGE_ID_CONTEXT = b"opspawn Nats-Msg-Id\x00"
"""Prefix of what a message id is an HMAC of: no event's signed content starts with it, so a
message id is never a valid signature and the other way round."""


class SigningKey:
    """A per-task HMAC-SHA256 key. Its value never appears in a repr, log or error."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"a signing key must be at least {MIN_KEY_BYTES} bytes long")
        self._secret = secret

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"

    def sign(self, message: bytes) -> str:
        """Lowercase hex HMAC-SHA256 of `message`."""
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def message_id(self, event_id: str) -> str:
        """The event's `Nats-Msg-Id`: stable across retries, unguessable without the key."""
        return self.sign(_MESSAGE_ID_CONTEXT + event_id.encode())

    def matches(self, message: bytes, signature: str) -> bool:
        """Whether `signature` is this key's signature of `message` (constant-time)."""
        return hmac.compare_digest(self.sign(message).encode(), signature.encode())


# --------------------------------------------------------------------------- models


class WireModel(BaseModel):
    """Base of the wire models: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class EventType(StrEnum):
    STARTED = "started"
    STEP = "step"
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    MEMORY = "memory"
    USAGE = "usage"
    LOG = "log"
    RESULT = "result"
    RESULT_PART = "result_part"
    ERROR = "error"
    FINISHED = "finished"


class TaskRef(WireModel):
    """Which task and attempt an event belongs to."""

    namespace: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    """Namespace of the AgentTask."""
    task_name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)
    """Name of the AgentTask."""
    task_uid: str = Field(min_length=1, max_length=128, pattern=_SUBJECT_SAFE)
    """metadata.uid of the AgentTask."""
    attempt: int = Field(ge=1)
    """Attempt number, from 1."""

    @property
    def subject(self) -> str:
        return _subject(self.namespace, self.task_uid)  # both subject-safe by the schema


class Payload(WireModel):
    """Base of the typed payloads; `event_type` says which event type carries it.

    Bulk text fields carry no length bound (`build_event` cuts them to the payload cap);
    fields holding arbitrary JSON are typed `JsonValue`, so the cap can turn them into text.
    """

    event_type: ClassVar[EventType]


Name = Annotated[str, Field(max_length=256)]
Short = Annotated[str, Field(max_length=1024)]
Count = Annotated[int, Field(ge=0)]


class StartedPayload(Payload):
    """The runner started working on the attempt."""

    event_type = EventType.STARTED
    model_provider: Name
    """Model provider (openai, anthropic, google, openai-compatible)."""
    model_name: Name
    """Model name as the provider knows it."""
    runner_version: Name = ""
    """Version of the runner."""
    pod_name: Name | None = None
    """Pod the runner runs in, when known."""


class StepPayload(Payload):
    """A new step (model turn) of the agent loop begins."""

    event_type = EventType.STEP
    step: int = Field(ge=1)
    """Step number, from 1."""
    summary: str = ""
    """What the step is about, for humans."""


class LlmCallPayload(Payload):
    """One model call finished."""

    event_type = EventType.LLM_CALL
    step: int = Field(ge=1)
    """Step the call belongs to."""
    provider: Name
    """Model provider."""
    model: Name
    """Model name the provider reported (or was asked for)."""
    input_tokens: Count = 0
    """Prompt tokens of this call."""
    output_tokens: Count = 0
    """Generated tokens of this call."""
    cached_tokens: Count = 0
    """Prompt tokens served from the provider's cache."""
    reasoning_tokens: Count = 0
    """Reasoning tokens, where reported."""
    duration_ms: Count = 0
    """Wall-clock duration, retries included."""
    retries: Count = 0
    """Retries the call needed (429, 5xx, timeouts)."""
    finish_reason: Name | None = None
    """Why the model stopped (stop, tool_calls, length …)."""
    tool_calls: Count = 0
    """How many tool calls the model asked for."""
    cost_usd: float | None = Field(default=None, ge=0, alias="costUSD")
    """Cost of this call in US dollars; None when the model's price is unknown."""
    text: str = ""
    """Text the model produced."""


class ToolCallPayload(Payload):
    """The model asked for a tool call, and the allow-list decided."""

    event_type = EventType.TOOL_CALL
    step: int | None = Field(default=None, ge=1)
    """Step of the model turn that asked for the call."""
    call_id: Name
    """Id of the call (the provider's, or the runner's)."""
    tool: Name
    """Tool name as the model sees it (MCP tools as <server>__<tool>)."""
    arguments: JsonValue = None
    """Arguments the model gave."""
    allowed: bool
    """Whether the call was allowed to run."""
    reason: Short = ""
    """Why it was refused, when it was."""


class ToolResultPayload(Payload):
    """A tool call finished (or was refused); this is what the model sees."""

    event_type = EventType.TOOL_RESULT
    step: int | None = Field(default=None, ge=1)
    """Step of the model turn that asked for the call."""
    call_id: Name
    """Id of the call."""
    tool: Name
    """Tool name as the model sees it."""
    is_error: bool = False
    """True when the result is an error (refused, invalid arguments, failed, timed out)."""
    content: str = ""
    """Result text as given to the model."""
    duration_ms: Count = 0
    """How long the call took."""


class MemoryPayload(Payload):
    """Memory was read, written, expired or compacted, or long-term memory is unavailable.

    `recall`, `remember` and `expire` are long-term memory (the store answered), `compact` is
    the conversation window, `unavailable` says the long-term store or its embedder failed
    (`detail` says how): the task goes on without it, unless it is required. The operator
    sets the task's `MemoryAvailable` condition from these.
    """

    event_type = EventType.MEMORY
    operation: Literal["recall", "remember", "expire", "compact", "unavailable"]
    """What happened."""
    count: Count = 0
    """Memories recalled, written or deleted as expired, or turns compacted."""
    detail: str = ""
    """What was recalled or written, or why memory is unavailable, for the audit trail."""


class UsagePayload(Payload):
    """Cumulative usage of the attempt so far."""

    event_type = EventType.USAGE
    input_tokens: Count = 0
    output_tokens: Count = 0
    cached_tokens: Count = 0
    reasoning_tokens: Count = 0
    total_tokens: Count = 0
    cost_usd: float | None = Field(default=None, ge=0, alias="costUSD")
    """Cost in US dollars; absent when the model's price is unknown."""


class LogPayload(Payload):
    """A log line worth keeping in the audit trail."""

    event_type = EventType.LOG
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str
    """The log message."""


class ResultPayload(Payload):
    """The final result of the attempt.

    A result whose payload does not fit `RESULT_PAYLOAD_LIMIT_BYTES` is cut (`build_event`):
    `structured`, when set, is replaced by `TRUNCATION_MARKER`, `text` is cut to fit, and the
    event carries `truncated: true`, while `size_bytes` and `sha256` still describe the FULL
    text. The full text then follows in `result_part` events (`ResultPartPayload`) with index
    0 .. count-1, published after this event (and before `finished`), whose texts
    concatenated in index order are the full text: its SHA-256 is `sha256` (and, when
    outputSchema is set, it parses to the full structured value). A result that fits has no
    parts. `result_parts` makes the parts.
    """

    event_type = EventType.RESULT
    text: str
    """The result as text (JSON text when outputSchema is set)."""
    structured: JsonValue = None
    """The result parsed as JSON, when outputSchema is set."""
    size_bytes: Count
    """Size of the full result text in bytes (UTF-8)."""
    sha256: str = Field(pattern=_HEX_SHA256)
    """SHA-256 of the full result text, to tell a cut result from the original."""

    @classmethod
    def of(cls, text: str, structured: JsonValue = None) -> Self:
        """A result payload with its size and digest computed from `text`."""
        data = text.encode()
        return cls(
            text=text,
            structured=structured,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )


class ResultPartPayload(Payload):
    """One slice of the full text of a result whose `result` event was cut (`ResultPayload`).

    Parts `0 .. count-1` follow their `result` event; each slice holds whole characters, and
    the slices concatenated in index order are the full result text. A part's serialized
    payload is at most `RESULT_PART_BYTES`, so it is never cut itself.
    """

    event_type = EventType.RESULT_PART
    index: int = Field(ge=0)
    """Position of this slice, from 0."""
    count: int = Field(ge=1)
    """How many parts carry the result (the same in every part)."""
    text: str
    """The slice of the full result text."""

    @model_validator(mode="after")
    def _index_in_range(self) -> Self:
        if self.index >= self.count:
            raise ValueError(f"part index {self.index} is not below the count {self.count}")
        return self


class ErrorPayload(Payload):
    """Something went wrong; `retryable` tells whether another attempt may help."""

    event_type = EventType.ERROR
    reason: Name
    """Machine-readable reason in CamelCase, e.g. ModelUnavailable, InvalidOutput."""
    message: str = ""
    """Human-readable details (never secrets)."""
    retryable: bool = False
    """Whether the failure is transient."""


class FinishedPayload(Payload):
    """The attempt is over; the last event of an attempt."""

    event_type = EventType.FINISHED
    exit_code: int
    """The exit code the runner is about to exit with (`RunnerExitCode`)."""
    reason: Name
    """Why the run stopped (`opspawn.runner.exits.ExitReason`, e.g. Completed, MaxStepsReached,
    Terminated): finer than the exit code, which follows from it."""
    steps: Count = 0
    """Steps taken."""
    duration_ms: Count = 0
    """Duration of the attempt."""


EventPayload = (
    StartedPayload
    | StepPayload
    | LlmCallPayload
    | ToolCallPayload
    | ToolResultPayload
    | MemoryPayload
    | UsagePayload
    | LogPayload
    | ResultPayload
    | ResultPartPayload
    | ErrorPayload
    | FinishedPayload
)

PAYLOAD_TYPES: dict[EventType, type[Payload]] = {
    cls.event_type: cls
    for cls in (
        StartedPayload,
        StepPayload,
        LlmCallPayload,
        ToolCallPayload,
        ToolResultPayload,
        MemoryPayload,
        UsagePayload,
        LogPayload,
        ResultPayload,
        ResultPartPayload,
        ErrorPayload,
        FinishedPayload,
    )
}


class RunnerEvent(WireModel):
    """One runner event, as it travels over NATS and is stored in the audit trail."""

    schema_version: Literal[1] = SCHEMA_VERSION
    """Version of this schema."""
    id: str = Field(min_length=1, max_length=256)
    """Deterministic id: <task-uid>/<attempt>/<sequence>; also the Nats-Msg-Id."""
    task_uid: str = Field(min_length=1, max_length=128, pattern=_SUBJECT_SAFE)
    """metadata.uid of the AgentTask."""
    namespace: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    """Namespace of the AgentTask."""
    task_name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)
    """Name of the AgentTask."""
    attempt: int = Field(ge=1)
    """Attempt number, from 1."""
    sequence: int = Field(ge=1)
    """Position of the event within the attempt, from 1, without gaps."""
    time: AwareDatetime
    """When the runner created the event (UTC)."""
    type: EventType
    """What happened; decides the payload's shape."""
    payload: EventPayload
    """Details, typed per event type."""
    truncated: bool = False
    """True when the payload was cut to fit the cap."""
    signature: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """HMAC-SHA256 (hex) of the canonical serialization without this field."""

    @model_validator(mode="before")
    @classmethod
    def _payload_for_type(cls, data: Any) -> Any:
        """Validate the payload with the model its event type names (no guessing)."""
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            try:
                payload_type = PAYLOAD_TYPES[EventType(str(data.get("type")))]
            except ValueError:
                return data  # the `type` field reports the unknown type
            data = {**data, "payload": payload_type.model_validate(data["payload"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if type(self.payload).event_type != self.type:
            raise ValueError(f"a {self.type} event cannot carry a {type(self.payload).__name__}")
        if self.id != event_id(self.task_uid, self.attempt, self.sequence):
            raise ValueError("id must be <taskUid>/<attempt>/<sequence>")
        return self

    @field_serializer("time")
    def _utc(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    @property
    def subject(self) -> str:
        return _subject(self.namespace, self.task_uid)  # both subject-safe by the schema

    def signed_content(self) -> bytes:
        """The bytes the signature covers: canonical JSON of the event without `signature`."""
        return canonical_json(self.model_dump(mode="json", by_alias=True, exclude={"signature"}))

    def to_bytes(self) -> bytes:
        """The encoded event as published (canonical JSON, signature included)."""
        return canonical_json(self.model_dump(mode="json", by_alias=True))


# --------------------------------------------------------------------------- building


def payload_limit(event_type: EventType) -> int:
    """Cap on the serialized payload of an event of this type, in bytes."""
    if event_type in (EventType.RESULT, EventType.RESULT_PART):
        return RESULT_PAYLOAD_LIMIT_BYTES
    return PAYLOAD_LIMIT_BYTES


def build_event(
    task: TaskRef,
    sequence: int,
    payload: EventPayload,
    *,
    time: datetime | None = None,
) -> RunnerEvent:
    """An unsigned event of `task` with this sequence number, its payload cut to the cap."""
    data = payload.model_dump(mode="json", by_alias=True)
    limit = payload_limit(payload.event_type)
    structured_dropped = False
    if isinstance(payload, ResultPayload):
        data, structured_dropped = _result_without_structured(data, limit)
    data, flattened = _within_depth(data, MAX_NESTING_DEPTH - 1)  # the envelope is a level
    fitted, truncated = fit_json(data, limit)
    truncated = truncated or structured_dropped or flattened
    if truncated:
        payload = type(payload).model_validate(fitted)
    return RunnerEvent(
        id=event_id(task.task_uid, task.attempt, sequence),
        task_uid=task.task_uid,
        namespace=task.namespace,
        task_name=task.task_name,
        attempt=task.attempt,
        sequence=sequence,
        time=time or datetime.now(UTC),
        type=payload.event_type,
        payload=payload,
        truncated=truncated,
    )


def _within_depth(data: dict[str, Any], max_depth: int) -> tuple[dict[str, Any], bool]:
    """`data` with every array or object nested deeper than `max_depth` levels replaced by its
    JSON text (or TRUNCATION_MARKER, if even that is too deep to write); (result, whether
    changed). Consumers refuse deeper events (`read_event_json`), so the runner never sends
    one."""
    if _nesting_depth(data) <= max_depth:
        return data, False
    data = copy.deepcopy(data)
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        container, depth = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for slot in [_Slot(container, key, value) for key, value in items]:
            if not isinstance(slot.value, dict | list):
                continue
            if depth + 1 <= max_depth:
                stack.append((slot.value, depth + 1))
                continue
            try:
                slot.replace(json.dumps(slot.value, ensure_ascii=False))
            except (RecursionError, ValueError):
                slot.replace(TRUNCATION_MARKER)
    return data, True


def sign_event(event: RunnerEvent, key: SigningKey) -> RunnerEvent:
    """A copy of `event` carrying its signature."""
    return event.model_copy(update={"signature": key.sign(event.signed_content())})


class UnreadableEventError(EventVerificationError):
    """The message is not even a candidate event: oversized, not UTF-8, not strict JSON, too
    deeply nested, or not a JSON object."""


def read_event_json(data: bytes) -> dict[str, Any]:
    """The message as a JSON object, nothing believed yet. Raises UnreadableEventError.

    Strict on purpose, because whatever passes is later canonicalised, validated and stored:
    UTF-8 only (no BOM, no other encoding), no duplicate keys (two parsers could disagree on
    which one counts), no NaN or Infinity (no canonical form), no number too large for a float
    or longer than `MAX_NUMBER_CHARS`, at most `MAX_NESTING_DEPTH` levels of nesting.
    """
    if len(data) > MAX_EVENT_BYTES:
        raise UnreadableEventError(f"event of {len(data)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableEventError(f"event is not UTF-8: {error.reason} at {error.start}") from None
    try:
        raw = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise UnreadableEventError("event is nested too deeply to parse") from None
    except ValueError as error:
        raise UnreadableEventError(f"event is not JSON: {_bounded_text(str(error))}") from None
    if not isinstance(raw, dict):
        raise UnreadableEventError("event is not a JSON object")
    if _nesting_depth(raw) > MAX_NESTING_DEPTH:
        raise UnreadableEventError(f"event is nested deeper than {MAX_NESTING_DEPTH} levels")
    return raw


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate key in an object")
    return found


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of more than {MAX_NUMBER_CHARS} characters")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number out of the range of a float")
    return number


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of more than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _bounded_text(text: str, limit: int = 256) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNCATION_MARKER


def _nesting_depth(value: Any) -> int:
    """How many levels of arrays and objects `value` has, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def verify_event(data: bytes, key: SigningKey, *, subject: str | None = None) -> RunnerEvent:
    """Decode an event, believing it only if `key` signed it (and it came on its own subject).

    The signature is checked over the received JSON before the event is validated, so nothing
    unsigned is ever interpreted. Raises EventVerificationError, and nothing else, whatever
    the bytes are.
    """
    return verify_event_json(read_event_json(data), key, subject=subject)


def verify_event_json(
    raw: dict[str, Any], key: SigningKey, *, subject: str | None = None
) -> RunnerEvent:
    """`verify_event` for a message already read with `read_event_json` (which it consumes)."""
    signature = raw.pop("signature", None)
    if not isinstance(signature, str) or not signature:
        raise EventVerificationError("event is not signed")
    if not _SIGNATURE.match(signature):
        raise EventVerificationError("event signature is not 64 lowercase hex digits")
    try:
        content = canonical_json(raw)
    except (ValueError, RecursionError) as error:
        raise EventVerificationError(f"event cannot be canonicalised: {error}") from None
    if not key.matches(content, signature):
        raise EventVerificationError("event signature does not match the task's key")
    try:
        event = RunnerEvent.model_validate({**raw, "signature": signature})
    except (ValidationError, RecursionError) as error:
        raise EventVerificationError(
            f"signed event does not match the schema: {_bounded_text(str(error), 2048)}"
        ) from None
    if subject is not None and subject != event.subject:
        raise EventVerificationError(
            f"event of {event.namespace}/{event.task_uid} arrived on subject {subject!r}"
        )
    return event


def _result_without_structured(data: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """A result payload that does not fit gives up its `structured` value first (for
    TRUNCATION_MARKER), so that its text keeps as much as fits; (data, whether given up).

    The structured value is the full text parsed, and the full text follows in `result_part`
    events. Cut by `fit_json` instead, a large structured value of many short strings would be
    cut a string at a time (slow) down to `sha256`, which must not be cut.
    """
    if data.get("structured") is None or len(canonical_json(data)) <= limit:
        return data, False
    return {**data, "structured": TRUNCATION_MARKER}, True


# --------------------------------------------------------------------------- result parts

_PART_OVERHEAD_BYTES = 96
"""Room for everything of a part's serialized payload but its text (`{"count":…,"index":…,
"text":…}` with 20-digit numbers is 70 bytes)."""


def result_parts(text: str, structured: JsonValue = None) -> list[ResultPartPayload]:
    """The `result_part` payloads that carry `text` after its `result` event; empty when the
    result (`ResultPayload.of(text, structured)`) fits its event uncut.

    Consecutive slices of `text`, each holding whole characters and as long as fits: the
    serialized payload of each part (JSON escapes included) is at most `RESULT_PART_BYTES`.
    Their texts concatenated in index order are `text`.
    """
    result = ResultPayload.of(text, structured).model_dump(mode="json", by_alias=True)
    if len(canonical_json(result)) <= RESULT_PAYLOAD_LIMIT_BYTES:
        return []
    budget = RESULT_PART_BYTES - _PART_OVERHEAD_BYTES  # for the JSON string, quotes included
    slices: list[str] = []
    start = 0
    while start < len(text):
        # Every character takes at least one byte: the longest prefix of at most `budget`
        # bytes of UTF-8 is the first guess, shortened while JSON escapes make it too long.
        length = len(_cut_utf8(text[start : start + budget], budget - 2))
        size = _json_string_bytes(text[start : start + length])
        while size > budget:
            length = max(1, min(length - 1, length * budget // size))
            size = _json_string_bytes(text[start : start + length])
        slices.append(text[start : start + length])
        start += length
    return [
        ResultPartPayload(index=index, count=len(slices), text=piece)
        for index, piece in enumerate(slices)
    ]


def _json_string_bytes(text: str) -> int:
    """Size of `text` as a JSON string in canonical JSON (quotes and escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode())


# --------------------------------------------------------------------------- truncation


def fit_json(data: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """`data` cut until its canonical JSON is at most `limit` bytes; (result, whether cut).

    The longest string is cut first (each cut ends with TRUNCATION_MARKER); when no string is
    long enough to help, the largest nested list or object is replaced by its JSON text, which
    the next round cuts. Top-level keys are kept, so the typed fields stay in place.
    """
    size = len(canonical_json(data))
    if size <= limit:
        return data, False
    data = copy.deepcopy(data)
    marker_bytes = len(TRUNCATION_MARKER.encode())
    while size > limit:
        excess = size - limit
        leaf = _largest(data, want_string=True)
        if leaf is not None and _utf8_len(leaf.value) > marker_bytes + 16:
            keep = max(0, _utf8_len(leaf.value) - excess - marker_bytes)
            leaf.replace(_cut_utf8(leaf.value, keep) + TRUNCATION_MARKER)
        else:
            nested = _largest(data, want_string=False)
            if nested is None:
                raise ValueError(f"payload cannot be cut below {limit} bytes")
            nested.replace(canonical_json(nested.value).decode())
        size = len(canonical_json(data))
    return data, True


class _Slot:
    """A place in a JSON document (a container and a key or index) and the value there."""

    def __init__(self, parent: dict[str, Any] | list[Any], key: Any, value: Any) -> None:
        self.parent, self.key, self.value = parent, key, value

    def replace(self, value: Any) -> None:
        self.parent[self.key] = value


def _largest(document: dict[str, Any], *, want_string: bool) -> _Slot | None:
    """The largest string (or nested list/object, never the document itself) in `document`."""
    best: _Slot | None = None
    best_size = -1
    stack: list[dict[str, Any] | list[Any]] = [document]
    while stack:
        container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, dict | list):
                stack.append(value)
            if want_string and isinstance(value, str):
                size = _utf8_len(value)
            elif not want_string and isinstance(value, dict | list):
                size = len(canonical_json(value))
            else:
                continue
            if size > best_size:
                best, best_size = _Slot(container, key, value), size
    return best


def _utf8_len(text: str) -> int:
    return len(text.encode())


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` that fits in `max_bytes` bytes of UTF-8."""
    return text.encode()[:max_bytes].decode(errors="ignore")


# --------------------------------------------------------------------------- termination message


class TerminationMessage(WireModel):
    """What the runner leaves in its termination-message file; at most 4096 bytes as JSON."""

    schema_version: Literal[1] = SCHEMA_VERSION
    """Version of this schema."""
    exit_code: int
    """The runner's exit code (`RunnerExitCode`)."""
    reason: Name
    """Why the run stopped (as in the `finished` event)."""
    result: str = ""
    """The beginning of the result."""
    result_truncated: bool = False
    """True when `result` is shorter than the full result."""
    result_size_bytes: Count = 0
    """Size of the full result in bytes (UTF-8)."""
    result_sha256: str | None = Field(default=None, pattern=_HEX_SHA256)
    """SHA-256 of the full result."""
    message: str = ""
    """Error details when the attempt did not succeed."""

    @classmethod
    def build(cls, exit_code: RunnerExitCode, result: str | None = None, message: str = "") -> Self:
        """A termination message whose JSON fits TERMINATION_MESSAGE_MAX_BYTES.

        When it does not fit, the longer of result and message is cut first.
        """
        full = (result or "").encode()
        fields: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "exitCode": int(exit_code),
            "reason": exit_code.reason,
            "result": result or "",
            "resultTruncated": False,
            "resultSizeBytes": len(full),
            "resultSha256": hashlib.sha256(full).hexdigest() if result is not None else None,
            "message": message,
        }
        fitted, _ = fit_json(fields, TERMINATION_MESSAGE_MAX_BYTES)
        # `true` is shorter than `false`, so setting the flag keeps the message within the cap.
        cut = fitted["result"] != fields["result"]
        return cls.model_validate({**fitted, "resultTruncated": cut})

    def to_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", by_alias=True))
