"""The audit store: tasks, events, security_events, dead_letters.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _time(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _count(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def _id() -> sa.Column[Any]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_uid", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("model_provider", sa.String(256)),
        sa.Column("model_name", sa.String(256)),
        sa.Column("pod_name", sa.String(256)),
        sa.Column("phase", sa.String(32)),
        sa.Column("reason", sa.String(256)),
        sa.Column("exit_code", sa.Integer()),
        _count("steps"),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("duration_ms", sa.BigInteger()),
        _count("input_tokens"),
        _count("output_tokens"),
        _count("cached_tokens"),
        _count("reasoning_tokens"),
        _count("total_tokens"),
        sa.Column("cost_usd", sa.Double()),
        sa.Column("usage_sequence", sa.BigInteger()),
        sa.Column("result_text", sa.Text()),
        sa.Column("result_structured", _json()),
        sa.Column("result_sha256", sa.String(64)),
        sa.Column("result_size_bytes", sa.BigInteger()),
        sa.Column("result_sequence", sa.BigInteger()),
        sa.Column("spec", _json()),
        _time("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("task_uid", "attempt", name="pk_tasks"),
    )
    op.create_index("ix_tasks_namespace_name", "tasks", ["namespace", "name"])
    op.create_index("ix_tasks_started_at", "tasks", ["started_at"])

    op.create_table(
        "events",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("task_uid", sa.String(128), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("task_name", sa.String(253), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        _time("time", nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        _time("received_at", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_index(
        "ix_events_task_attempt_sequence", "events", ["task_uid", "attempt", "sequence"]
    )

    op.create_table(
        "security_events",
        _id(),
        _time("received_at", nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("task_uid", sa.Text()),
        sa.Column("namespace", sa.Text()),
        sa.Column("event_id", sa.Text()),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_events"),
    )
    op.create_index("ix_security_events_received_at", "security_events", ["received_at"])
    op.create_index(
        "uq_security_events_fingerprint", "security_events", ["fingerprint"], unique=True
    )

    op.create_table(
        "dead_letters",
        _id(),
        _time("received_at", nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("uq_dead_letters_fingerprint", "dead_letters", ["fingerprint"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_dead_letters_fingerprint", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("uq_security_events_fingerprint", table_name="security_events")
    op.drop_index("ix_security_events_received_at", table_name="security_events")
    op.drop_table("security_events")
    op.drop_index("ix_events_task_attempt_sequence", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_tasks_started_at", table_name="tasks")
    op.drop_index("ix_tasks_namespace_name", table_name="tasks")
    op.drop_table("tasks")
