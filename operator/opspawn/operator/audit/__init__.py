"""The audit store: every runner event, one row per task attempt, rejected events and dead
letters, in Postgres (SQLite for local use); `opspawn audit` reads it. See docs/audit.md."""

from opspawn.operator.audit.records import (
    DeadLetter,
    EventRecord,
    Rejected,
    SecurityEventRecord,
    TaskRecord,
    TaskSnapshot,
)
from opspawn.operator.audit.store import AuditStore, AuditStoreError

__all__ = [
    "AuditStore",
    "AuditStoreError",
    "DeadLetter",
    "EventRecord",
    "Rejected",
    "SecurityEventRecord",
    "TaskRecord",
    "TaskSnapshot",
]
