"""Alembic environment of the audit store: runs the migrations on the connection it is given
(`alembic_config(connection)`), inside the caller's transaction when there is one."""

from __future__ import annotations

from alembic import context

from opspawn.operator.audit.schema import VERSION_TABLE, metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the audit store's migrations run on a connection: use AuditStore.migrate() "
        "(or alembic_config(connection) from opspawn.operator.audit.migrations)"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=config.attributes.get("version_table", VERSION_TABLE),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
