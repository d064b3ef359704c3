"""Alembic migrations of the audit store, run from code (no alembic.ini).

`env.py` takes the open connection from `config.attributes["connection"]` (see
`alembic_config`); `AuditStore.migrate()` is the way to run them. A new revision::

    from alembic import command
    from opspawn.operator.audit.migrations import alembic_config
    command.revision(alembic_config(), message="...", rev_id="0002")

then write `upgrade()`/`downgrade()` by hand (or pass `autogenerate=True` with a connection
to a database at head), and keep `schema.py` in step: a test compares the two on Postgres.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection

from opspawn.operator.audit.schema import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the audit store's migrations, bound to `connection`.

    The URL is never put into the configuration (it could carry a password, and Alembic's
    ini-style interpolation would trip over a `%` in it); the connection is handed over as an
    attribute instead.
    """
    config = Config(attributes={"connection": connection, "version_table": VERSION_TABLE})
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config
