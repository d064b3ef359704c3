"""An audit store on a SQLite file of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opspawn.operator.audit import AuditStore


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def store(url: str) -> Iterator[AuditStore]:
    audit = AuditStore(url)
    audit.migrate()
    try:
        yield audit
    finally:
        audit.close()
