"""security_events.count and last_received_at: rejected input aggregated per source and window.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from opspawn.operator.audit.schema import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every existing row stood for one rejection; a constant default rewrites no rows on
    # Postgres 11 and later (only the catalog changes).
    op.add_column(
        "security_events",
        sa.Column("count", sa.BigInteger(), nullable=False, server_default="1"),
    )
    op.add_column("security_events", sa.Column("last_received_at", UTCDateTime()))
    op.create_index("ix_security_events_last_received_at", "security_events", ["last_received_at"])


def downgrade() -> None:
    op.drop_index("ix_security_events_last_received_at", "security_events")
    with op.batch_alter_table("security_events") as batch:  # SQLite drops through a copy
        batch.drop_column("last_received_at")
        batch.drop_column("count")
