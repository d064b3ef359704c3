"""The operator's own configuration (what a platform team sets, never what a task asks for).

Every setting has a command-line option of `opspawn operator` and an environment variable
(`OPSPAWN_OPERATOR_<NAME>`), so the Helm chart can set them either way; the options win.
`docs/operator.md` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from opspawn.operator.runner_job import RunnerSettings
from opspawn.operator.stream import StreamSettings


@dataclass(frozen=True)
class ConcurrencyLimits:
    """How many tasks may hold a runner Job at once. None means unlimited.

    A task is admitted only when every cap that applies to it has room: the global cap, its
    namespace's cap (`per_namespace_overrides` first, then `per_namespace`) and its model's cap
    (tasks count per `<provider>/<model name>`).
    """

    total: int | None = None
    per_namespace: int | None = None
    per_model: int | None = None
    per_namespace_overrides: Mapping[str, int] = field(default_factory=dict)

    def namespace_cap(self, namespace: str) -> int | None:
        return self.per_namespace_overrides.get(namespace, self.per_namespace)


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `opspawn operator` is configured with."""

    runner: RunnerSettings
    limits: ConcurrencyLimits = field(default_factory=ConcurrencyLimits)
    stream: StreamSettings = field(default_factory=StreamSettings)
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty means the whole cluster."""
    weaviate_api_key_file: Path | None = None
    """The file with a Weaviate root user's API key: the operator provisions each namespace's
    memory user and role with it (`memory_access`); set whenever `runner.weaviate_url` is."""
    database_url: str | None = None
    """The audit store (SQLAlchemy URL); without it runner events are not consumed."""
    migrate: bool = True
    """Bring the audit store's schema up to date at start (Alembic)."""
    mirror_interval_seconds: float = 0.25
    """A task's status is rewritten from its events at most this often."""
    mirror_writes_in_flight: int = 8
    """Status writes from runner events that run at once; the rest wait their turn."""
    stall_seconds: int = 300
    """A running task whose runner sends no event for this long gets `Stalled` (0: off)."""
    workers: int = 32
    """Reconciles that run at once (each task is reconciled by one worker at a time)."""
    queue_position_refresh_seconds: float = 2.0
    """Queued tasks' `status.queuePosition` is rewritten at most this often."""
    event_interval_seconds: float = 10.0
    """At most one Kubernetes Event per task and reason within this interval."""
    health_address: str = "0.0.0.0"  # noqa: S104 (probes and scrapes come from outside the Pod)
    health_port: int = 8080
    """`/metrics`, `/healthz` and `/readyz` are served here; 0 turns the server off."""
