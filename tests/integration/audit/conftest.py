"""A Postgres server per test module (own temp dir, free port, stopped at teardown) and a fresh,
empty database on it per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from opspawn.dev.postgres import Postgres


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: Postgres) -> Iterator[str]:
    """A new database of this test's own: `postgresql+psycopg://…/<name>`."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield postgres.url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
