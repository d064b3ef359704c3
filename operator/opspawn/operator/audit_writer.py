"""What the reconcile tells the audit store, written in the background and retried until the
store takes it.

The lifecycle must not wait for Postgres, and Postgres being away must not lose what the
operator decided: a final phase recorded while the database was down is kept here and
written once it is back, however long that takes. Per attempt only the newest knowledge is
kept (a newer snapshot fills in what an older one knew), so an outage costs memory in the
number of attempts that changed, not in the number of changes.

Objects that pass themselves off as a task's (see `ownership`) become security events; each
object is reported once per operator process.

A task deleted while an attempt was open closes that attempt (Cancelled, TaskDeleted): when
the operator sees the deletion, and at start for tasks deleted while no operator ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from opspawn.operator.audit import AuditStore, Rejected, TaskSnapshot
from opspawn.operator.ownership import metadata_excerpt

logger = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)
"""Delays between attempts to write while the store refuses (the last one repeats)."""

TASK_DELETED = "TaskDeleted"
CANCELLED = "Cancelled"

REPORTED_MAX = 10_000
"""How many reported objects are remembered, so that each is reported once."""


def merged(older: TaskSnapshot, newer: TaskSnapshot) -> TaskSnapshot:
    """`newer` with the gaps (None) filled from `older`: what the store would hold after both."""
    known = {f.name: getattr(newer, f.name) for f in fields(newer)}
    return replace(older, **{name: value for name, value in known.items() if value is not None})


def deleted_attempt(
    task_uid: str, attempt: int, namespace: str, name: str, now: datetime
) -> TaskSnapshot:
    """The end of an attempt whose task was deleted before the attempt finished."""
    return TaskSnapshot(
        task_uid=task_uid,
        attempt=attempt,
        namespace=namespace,
        name=name,
        phase=CANCELLED,
        reason=TASK_DELETED,
        finished_at=now,
    )


def object_security_event(
    kind: str, metadata: Mapping[str, Any], reason: str, detail: str, task_uid: str
) -> Rejected:
    """A security event about a Kubernetes object (its claims only, never its data)."""
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    return Rejected(
        received_at=datetime.now(UTC),
        subject=f"kubernetes:{kind}/{namespace}/{name}",
        reason=reason,
        detail=detail,
        task_uid=task_uid or None,
        namespace=namespace or None,
        excerpt=metadata_excerpt(metadata),
    )


class AuditWriter:
    def __init__(self, audit: AuditStore | None) -> None:
        self._audit = audit
        self._snapshots: dict[tuple[str, int], TaskSnapshot] = {}
        self._security: list[Rejected] = []
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Snapshots and security events not written yet."""
        return len(self._snapshots) + len(self._security)

    def snapshot(self, snapshot: TaskSnapshot) -> None:
        """Record what the operator knows of one attempt (eventually)."""
        if self._audit is None:
            return
        key = (snapshot.task_uid, snapshot.attempt)
        older = self._snapshots.get(key)
        self._snapshots[key] = snapshot if older is None else merged(older, snapshot)
        self._kick()

    def security_event(self, object_uid: str, event: Rejected) -> None:
        """Report a suspicious object once (by its uid) as a security event."""
        if object_uid in self._reported:
            return
        self._reported[object_uid] = None
        if len(self._reported) > REPORTED_MAX:
            self._reported.popitem(last=False)
        logger.warning("security: %s (%s): %s", event.subject, event.reason, event.detail[:300])
        if self._audit is None:
            return
        self._security.append(event)
        self._kick()

    async def close_vanished(
        self,
        present: Callable[[str], bool],
        namespaces: Sequence[str],
        now: datetime,
        vanished: Callable[[str, str, str], None] = lambda uid, namespace, name: None,
    ) -> None:
        """Close the open attempts of tasks that are not `present` (deleted while no operator
        ran), telling `vanished` (uid, namespace, name) of each; retried until the store
        answers."""
        audit = self._audit
        if audit is None:
            return
        failures = 0
        while True:
            try:
                attempts = await asyncio.to_thread(audit.open_attempts, namespaces)
                break
            except Exception as error:
                self._log_refusal("the open attempts query", error)
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
        for uid, attempt, namespace, name in attempts:
            if not present(uid):
                vanished(uid, namespace, name)
                self.snapshot(deleted_attempt(uid, attempt, namespace, name, now))

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Wait until everything handed over so far is written."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write until cancelled; a write the store refuses is retried with backoff."""
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if await self._write_pending():
                failures = 0
                if not self.pending:
                    self._idle.set()
                continue
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            await asyncio.sleep(delay)
            self._wake.set()

    async def _write_pending(self) -> bool:
        """Write what is pending; False when the store refused (the rest stays pending)."""
        audit = self._audit
        if audit is None:  # nothing is queued without a store
            return True
        security, self._security = self._security, []
        try:
            if security:
                await asyncio.to_thread(audit.record_batch, [], security)
        except Exception as error:
            self._security = security + self._security
            self._log_refusal("security events", error)
            return False
        while self._snapshots:
            key, snapshot = next(iter(self._snapshots.items()))
            try:
                await asyncio.to_thread(audit.record_task, snapshot)
            except Exception as error:
                self._log_refusal("an attempt", error)
                return False
            if self._snapshots.get(key) is snapshot:  # not superseded meanwhile
                del self._snapshots[key]
            else:
                # A newer one arrived while this was written: keep it behind the others.
                self._snapshots[key] = self._snapshots.pop(key)
        return True

    def _log_refusal(self, what: str, error: Exception) -> None:
        logger.warning(
            "the audit store refused %s (%s); %d records wait and are retried",
            what,
            type(error).__name__,
            self.pending,
        )
