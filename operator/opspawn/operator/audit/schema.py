"""The audit store's tables (SQLAlchemy Core). Alembic's migrations create exactly this; a test
compares the two on a real Postgres.

`tasks`            one row per (task uid, attempt): the operator's view and the aggregate of
                   the attempt's events.
`events`           append-only, one row per runner event, keyed by the event's deterministic id.
`security_events`  messages that claimed to be events and were not believed.
`dead_letters`     messages that could not be read at all.

Types are portable between Postgres (the system of record) and SQLite (the embedded default
for local use): JSON is JSONB on Postgres; times are stored in UTC and always read back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

VERSION_TABLE = "opspawn_audit_version"
"""Alembic's version table: a name of our own, so the store can share a database."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """`timestamptz` on Postgres; on SQLite (which has no time zones) a UTC text timestamp.

    Binds aware datetimes converted to UTC (a naive one is taken to be UTC) and reads aware
    UTC datetimes back on both dialects.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON on SQLite, JSONB on Postgres; Python None is SQL NULL."""
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _autoincrement_id() -> sa.Column[int]:
    # BIGINT on Postgres (bigserial); SQLite autoincrements only an INTEGER primary key.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, default=0, server_default="0")


metadata = sa.MetaData(naming_convention={"pk": "pk_%(table_name)s"})

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_uid", sa.String(128), primary_key=True),
    sa.Column("attempt", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("model_provider", sa.String(256)),
    sa.Column("model_name", sa.String(256)),
    sa.Column("pod_name", sa.String(256)),
    sa.Column("phase", sa.String(32)),
    sa.Column("reason", sa.String(256)),
    sa.Column("exit_code", sa.Integer()),
    _count("steps"),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("duration_ms", sa.BigInteger()),
    _count("input_tokens"),
    _count("output_tokens"),
    _count("cached_tokens"),
    _count("reasoning_tokens"),
    _count("total_tokens"),
    sa.Column("cost_usd", sa.Double()),
    # The sequence of the usage event the totals above come from (usage is cumulative: the
    # latest by sequence wins, whatever order the events arrive in).
    sa.Column("usage_sequence", sa.BigInteger()),
    sa.Column("result_text", sa.Text()),
    sa.Column("result_structured", json_type()),
    sa.Column("result_sha256", sa.String(64)),
    sa.Column("result_size_bytes", sa.BigInteger()),
    sa.Column("result_sequence", sa.BigInteger()),
    # How many `result_part` events `result_text` was reassembled from (the full text of a
    # result too large for its `result` event); NULL while it is the `result` event's own text.
    sa.Column("result_parts", sa.Integer()),
    sa.Column("spec", json_type()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_tasks_namespace_name", "namespace", "name"),
    sa.Index("ix_tasks_started_at", "started_at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(256), primary_key=True),
    sa.Column("task_uid", sa.String(128), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("task_name", sa.String(253), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("sequence", sa.BigInteger(), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("payload", json_type(), nullable=False),
    sa.Column("truncated", sa.Boolean(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Index("ix_events_task_attempt_sequence", "task_uid", "attempt", "sequence"),
)

# The two tables below hold what an untrusted sender put on the wire: no length limits in the
# database (the store cuts excerpt and detail itself), so no input can make a batch fail.
# `fingerprint` (SHA-256) makes their inserts idempotent. For a dead letter it is of the row's
# content, so a batch retried after a commit whose acknowledgement was lost adds nothing. For a
# security event it is of its source and time window (see `AuditStore`): the rejections of one
# source within one window are one row, `count` says how many, `received_at` and
# `last_received_at` when the first and the last arrived, and the rest is the first one's.
security_events = sa.Table(
    "security_events",
    metadata,
    _autoincrement_id(),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("task_uid", sa.Text()),
    sa.Column("namespace", sa.Text()),
    sa.Column("event_id", sa.Text()),
    sa.Column("excerpt", sa.Text(), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False, server_default="1"),
    sa.Column("last_received_at", UTCDateTime()),
    sa.Index("ix_security_events_received_at", "received_at"),
    sa.Index("uq_security_events_fingerprint", "fingerprint", unique=True),
    sa.Index("ix_security_events_last_received_at", "last_received_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    _autoincrement_id(),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("stream_sequence", sa.BigInteger()),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("excerpt", sa.Text(), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Index("uq_dead_letters_fingerprint", "fingerprint", unique=True),
)
