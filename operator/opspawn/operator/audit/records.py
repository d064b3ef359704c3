"""What goes into the audit store besides runner events, and what comes out of it.

Written by the consumer and the operator: `Rejected` (a message that claimed to be an event and
was not believed), `DeadLetter` (a message that could not even be read), `TaskSnapshot` (what
the operator knows about one attempt). Read back by `opspawn audit`: `TaskRecord`,
`EventRecord`, `SecurityEventRecord`, each with `to_json()` giving a JSON-able dict.

Datetimes should be timezone-aware; a naive one is taken to be UTC. Everything read back is
aware and in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

EXCERPT_MAX_CHARS = 4096
"""Excerpts of rejected and dead-lettered messages are cut to this many characters."""

DETAIL_MAX_CHARS = 4096
"""So are the details of a rejection (a validation error can quote a lot of input)."""


@dataclass(frozen=True)
class Rejected:
    """A message that claimed to be a runner event but was not believed: a forged or missing
    signature, the wrong subject, a stale (fenced) attempt, an unknown task. It goes to
    `security_events`, never to `events`."""

    received_at: datetime
    subject: str
    reason: str
    """Machine-readable, e.g. VerificationFailed, UnknownTask, NoSigningKey."""
    detail: str = ""
    task_uid: str | None = None
    namespace: str | None = None
    event_id: str | None = None
    excerpt: str = ""
    """The beginning of the message as received (cut to EXCERPT_MAX_CHARS)."""


@dataclass(frozen=True)
class DeadLetter:
    """A poison message: not JSON, oversized, not an event subject, a schema violation."""

    received_at: datetime
    subject: str
    stream_sequence: int | None
    """The message's sequence in the JetStream stream, to find it there."""
    reason: str
    excerpt: str = ""
    """The beginning of the message as received (cut to EXCERPT_MAX_CHARS)."""


@dataclass(frozen=True)
class TaskSnapshot:
    """What the operator knows about one attempt of a task; `None` means "not known here" and
    never erases what the store already has."""

    task_uid: str
    attempt: int
    namespace: str
    name: str
    model_provider: str | None = None
    model_name: str | None = None
    phase: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    """The runner container's exit code as the Pod status reports it, when known."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    spec: Mapping[str, Any] | None = None
    """The AgentTask spec as JSON (it holds Secret references, never secret values)."""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    return value


def iso_utc(value: datetime) -> str:
    """`2026-01-01T12:00:00.123456Z`: how the audit store writes times in JSON."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskRecord:
    """One row of `tasks`: one attempt of one task."""

    task_uid: str
    attempt: int
    namespace: str
    name: str
    model_provider: str | None
    model_name: str | None
    pod_name: str | None
    phase: str | None
    reason: str | None
    exit_code: int | None
    steps: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float | None
    usage_sequence: int | None
    result_text: str | None
    result_structured: Any
    result_sha256: str | None
    result_size_bytes: int | None
    result_sequence: int | None
    result_parts: int | None
    """How many `result_part` events `result_text` was reassembled from; None when it is the
    text of the `result` event (cut when the result was larger than that event)."""
    spec: Any
    updated_at: datetime

    @property
    def model(self) -> str:
        """`provider/name`, or whichever part is known."""
        return "/".join(part for part in (self.model_provider, self.model_name) if part)

    def to_json(self) -> dict[str, Any]:
        return {key: _json_value(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class EventRecord:
    """One stored runner event (the payload as on the wire: camelCase keys)."""

    event_id: str
    task_uid: str
    namespace: str
    task_name: str
    attempt: int
    sequence: int
    type: str
    time: datetime
    payload: dict[str, Any]
    truncated: bool
    received_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {key: _json_value(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class PruneCounts:
    """How many rows `AuditStore.prune` deleted, per table."""

    security_events: int = 0
    dead_letters: int = 0
    attempts: int = 0
    events: int = 0


@dataclass(frozen=True)
class SecurityEventRecord:
    """One stored rejection, or several of one source within one window."""

    id: int
    received_at: datetime
    subject: str
    reason: str
    detail: str
    task_uid: str | None
    namespace: str | None
    event_id: str | None
    excerpt: str
    fingerprint: str
    """SHA-256 of the source and time window the row aggregates."""
    count: int = 1
    """How many rejections of this source within the window the row stands for (a batch
    retried after a lost commit acknowledgement may count twice: a lower bound, nearly)."""
    last_received_at: datetime | None = None
    """When the last of them arrived (None on rows stored before schema revision 0003)."""

    def to_json(self) -> dict[str, Any]:
        return {key: _json_value(value) for key, value in asdict(self).items()}
