"""tasks.result_parts: the number of `result_part` events a result was reassembled from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites no rows (on Postgres, only the catalog
    # changes), and NULL is right for every existing row (no runner sent parts before).
    op.add_column("tasks", sa.Column("result_parts", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:  # SQLite drops a column through a copy
        batch.drop_column("result_parts")
