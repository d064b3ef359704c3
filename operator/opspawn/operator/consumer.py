"""The event consumer: JetStream → verification → Postgres (commit) → ack, and the status mirror.

A durable pull consumer reads the event stream in batches. Each message is sorted into one of:

- a verified event: its subject names a task in scope, its HMAC matches that task's key and
  it matches the schema. It is stored; it reaches status only when it belongs to the task's
  current attempt (an older attempt's stragglers are fenced off from status);
- a rejected event (security): forged or unsigned, on the wrong subject, or of an unknown
  task; recorded in `security_events`, never stored as an event, never mirrored;
- a poison message (dead letter): oversized, not JSON, not an event subject; recorded in
  `dead_letters` and terminated, so it is never delivered again;
- a message to retry: its task's key could not be read just now (an API error); it is
  nak'ed with a delay and comes back.

Nothing a sender or a Secret holds can stop the consumer: whatever cannot be classified (a
bug's exception included) becomes a dead letter, and the loop goes on serving other tenants.

The durable consumer is checked while fetching: when it is gone (deleted by anyone with rights
on the stream) it is created again, resuming at the first stream sequence not yet acked, so
ingest goes on and nothing acked is delivered twice. `healthy` says whether the pipeline works:
the last fetch round trip is recent and the audit store is not refusing commits; the operator's
readiness includes it.

The batch is committed to the audit store in one transaction, retried until Postgres takes it
(the messages are kept "in progress" meanwhile, so JetStream holds them rather than
redelivering); only then are they acked. Inserts are idempotent by event id, so a redelivery
or a runner that published twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from opspawn.api.events import (
    STREAM_NAME,
    SUBJECT_PREFIX,
    EventVerificationError,
    RunnerEvent,
    UnreadableEventError,
    parse_subject,
    read_event_json,
    verify_event_json,
)
from opspawn.operator import metrics
from opspawn.operator.audit import AuditStore, DeadLetter, Rejected
from opspawn.operator.mirror import StatusMirror
from opspawn.operator.nats_auth import connect_options
from opspawn.operator.signing_keys import (
    SigningKeys,
    SigningKeyUnavailableError,
    UnusableSigningKeyError,
)
from opspawn.operator.store import Store

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 4096
IN_PROGRESS_EVERY_SECONDS = 10.0
COMMIT_RETRY_SECONDS = (0.5, 1, 2, 5)
CONSUMER_CHECK_SECONDS = 5.0
"""How often an idle consumer checks that its durable still exists (which is also how an idle
pipeline shows it is healthy)."""
UNHEALTHY_AFTER_SECONDS = 15.0
"""The pipeline is unhealthy when no fetch round trip succeeded, or commits kept failing,
for this long."""


@dataclass(frozen=True)
class ConsumerSettings:
    durable: str = "opspawn-operator"
    batch: int = 500
    fetch_timeout_seconds: float = 1.0
    ack_wait_seconds: int = 60
    max_ack_pending: int = 20_000


RETRY_DELAY_SECONDS = 5.0
"""A message whose task key could not be read comes back after this long."""


class _Retry:
    """A message to hand back to JetStream for redelivery later."""


_RETRY = _Retry()


@dataclass
class _Sorted:
    events: list[tuple[Msg, RunnerEvent]]
    rejected: list[tuple[Msg, Rejected]]
    poison: list[tuple[Msg, DeadLetter]]


def _excerpt(data: bytes) -> str:
    return data[:EXCERPT_CHARS].decode("utf-8", errors="replace")


def _now() -> datetime:
    return datetime.now(UTC)


def _stream_sequence(message: Msg) -> int:
    """The message's position in the stream, 0 when its reply subject does not say."""
    try:
        return message.metadata.sequence.stream if message.reply else 0
    except Exception:  # a reply subject that is not a JetStream ack subject
        return 0


def _dead_letter(message: Msg, reason: str) -> DeadLetter:
    return DeadLetter(
        received_at=_now(),
        subject=message.subject,
        stream_sequence=_stream_sequence(message),
        reason=reason,
        excerpt=_excerpt(message.data),
    )


def durable_name(namespaces: Sequence[str]) -> str:
    """One durable consumer per scope, so operators of different namespaces never share one."""
    if not namespaces:
        return "opspawn-operator"
    digest = hashlib.sha256(",".join(sorted(namespaces)).encode()).hexdigest()[:12]
    return f"opspawn-operator-{digest}"


def consumer_subjects(namespaces: Sequence[str]) -> list[str]:
    """What the consumer reads: every task's events, or only those of the served namespaces."""
    if not namespaces:
        return [f"{SUBJECT_PREFIX}.>"]
    return [f"{SUBJECT_PREFIX}.{namespace}.*" for namespace in namespaces]


class EventConsumer:
    def __init__(
        self,
        *,
        nats_url: str,
        namespaces: Sequence[str],
        audit: AuditStore,
        keys: SigningKeys,
        tasks: Store,
        mirror: StatusMirror,
        ready: Callable[[], Awaitable[None]],
        settings: ConsumerSettings | None = None,
        credentials: str | None = None,
    ) -> None:
        self._nats_url = nats_url
        self._credentials = credentials
        self._namespaces = tuple(namespaces)
        self._audit = audit
        self._keys = keys
        self._tasks = tasks
        self._mirror = mirror
        self._ready = ready
        self._settings = settings or ConsumerSettings()
        self._pending: list[_Sorted] = []
        self._has_pending = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._last_fetch_ok: float | None = None
        self._failing_commit_since: float | None = None
        self._fetched_through = 0
        """Highest stream sequence fetched so far."""
        self._retrying: set[int] = set()
        """Stream sequences handed back for a later try (nak'ed), not yet classified."""

    @property
    def healthy(self) -> bool:
        """Whether events flow: a fetch round trip succeeded lately and commits go through."""
        now = time.monotonic()
        fetching = (
            self._last_fetch_ok is not None and now - self._last_fetch_ok < UNHEALTHY_AFTER_SECONDS
        )
        committing = (
            self._failing_commit_since is None
            or now - self._failing_commit_since < UNHEALTHY_AFTER_SECONDS
        )
        return fetching and committing

    async def run(self) -> None:
        """Fetch, verify and mirror continuously; commit and ack in a task of its own, so the
        status keeps following the runners while the audit store is away."""
        # Until the watch caches are filled, every event would look like an unknown task's.
        await self._ready()
        connection = await self._connect()
        committer = asyncio.create_task(self._commit_loop(), name="audit-commit")
        try:
            subscription = await self._subscribe(connection)
            last_check = self._last_fetch_ok = time.monotonic()  # the durable answered
            while True:
                await self._room.wait()  # when the store is behind, JetStream holds the rest
                try:
                    messages = await subscription.fetch(
                        self._settings.batch, timeout=self._settings.fetch_timeout_seconds
                    )
                except TimeoutError:  # nats raises both its own and asyncio's
                    messages = []
                except (nats.errors.Error, OSError) as error:
                    logger.warning("fetching events failed (%s); checking the consumer", error)
                    subscription = await self._recover(connection, subscription)
                    last_check = time.monotonic()
                    continue
                if not messages and time.monotonic() - last_check > CONSUMER_CHECK_SECONDS:
                    # A fetch from a deleted consumer may just time out: ask the server.
                    subscription = await self._recover(connection, subscription)
                    last_check = time.monotonic()
                    continue
                if not messages:  # says nothing: a frozen server times out the same way
                    continue
                self._last_fetch_ok = time.monotonic()
                self._fetched_through = max(self._fetched_through, *map(_stream_sequence, messages))
                sorted_ = await self._sort(messages)
                self._mirror.observe(self._of_current_attempts(e for _, e in sorted_.events))
                self._pending.append(sorted_)
                self._has_pending.set()
                if self._pending_messages() >= self._settings.max_ack_pending // 2:
                    self._room.clear()
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            await connection.close()

    async def _recover(
        self,
        connection: NatsClient,
        subscription: nats.js.JetStreamContext.PullSubscription,
    ) -> nats.js.JetStreamContext.PullSubscription:
        """The subscription to fetch from next: the same one while its durable exists, a new
        durable (resuming after what was acked) when it is gone."""
        jetstream = connection.jetstream()
        try:
            await jetstream.consumer_info(STREAM_NAME, self._settings.durable)
        except nats.js.errors.NotFoundError:
            resume = self._resume_sequence()
            logger.warning(
                "the durable consumer %s is gone; creating it again from stream sequence %d",
                self._settings.durable,
                resume,
            )
            metrics.CONSUMER_RECREATED.inc()
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            return await self._subscribe(connection, start_sequence=resume)
        except Exception as error:  # NATS away or refusing: try again on the next round
            logger.warning("cannot check the durable consumer (%s)", type(error).__name__)
            await asyncio.sleep(1)
            return subscription
        self._last_fetch_ok = time.monotonic()
        return subscription

    def _resume_sequence(self) -> int:
        """Where a recreated consumer starts: after the last message fetched, or at the first
        one handed back for a later try. Every other fetched message is committed by the commit
        loop (which retries until it is), so only its ack, now addressed to the deleted
        consumer, is lost, and that is harmless."""
        return min({*self._retrying, self._fetched_through + 1} - {0})

    def _pending_messages(self) -> int:
        return sum(len(s.events) + len(s.rejected) + len(s.poison) for s in self._pending)

    async def _commit_loop(self) -> None:
        while True:
            await self._has_pending.wait()
            self._has_pending.clear()
            batches, self._pending = self._pending, []
            self._room.set()
            merged = _Sorted(
                [item for b in batches for item in b.events],
                [item for b in batches for item in b.rejected],
                [item for b in batches for item in b.poison],
            )
            await self._commit_and_ack(merged)

    async def _connect(self) -> NatsClient:
        return await nats.connect(
            self._nats_url.split(","),
            name="opspawn-operator",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **connect_options(self._credentials),
        )

    async def _subscribe(
        self, connection: NatsClient, start_sequence: int | None = None
    ) -> nats.js.JetStreamContext.PullSubscription:
        """Bind to the durable consumer, creating it (or bringing it up to date) first; waits
        for the stream, which the operator creates at start. A new durable starts at
        `start_sequence` (None: the start of the stream); an existing one keeps its position."""
        jetstream = connection.jetstream()
        while True:
            try:
                config = await self._consumer_config(jetstream, start_sequence)
                await jetstream.add_consumer(STREAM_NAME, config)
                return await jetstream.pull_subscribe_bind(self._settings.durable, STREAM_NAME)
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.5)

    async def _consumer_config(
        self, jetstream: nats.js.JetStreamContext, start_sequence: int | None
    ) -> ConsumerConfig:
        deliver: dict[str, object] = {"deliver_policy": DeliverPolicy.ALL}
        if start_sequence is not None:
            deliver = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": start_sequence,
            }
        try:  # an existing durable's start cannot change: keep what it was created with
            existing = await jetstream.consumer_info(STREAM_NAME, self._settings.durable)
            deliver = {
                "deliver_policy": existing.config.deliver_policy,
                "opt_start_seq": existing.config.opt_start_seq,
            }
        except nats.js.errors.NotFoundError:
            pass
        return ConsumerConfig(
            durable_name=self._settings.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._settings.ack_wait_seconds,
            max_ack_pending=self._settings.max_ack_pending,
            max_deliver=-1,
            filter_subjects=consumer_subjects(self._namespaces),
            **deliver,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ one batch

    async def _commit_and_ack(self, sorted_: _Sorted) -> None:
        events = [event for _, event in sorted_.events]
        messages = [m for m, _ in (*sorted_.events, *sorted_.rejected, *sorted_.poison)]
        await self._commit(
            messages,
            events,
            [record for _, record in sorted_.rejected],
            [record for _, record in sorted_.poison],
        )
        for message, _ in (*sorted_.events, *sorted_.rejected):
            with contextlib.suppress(Exception):  # a lost ack means a harmless redelivery
                await message.ack()
        for message, _ in sorted_.poison:
            with contextlib.suppress(Exception):
                await message.term()
        metrics.EVENTS_INGESTED.inc(len(events))
        metrics.EVENTS_REJECTED.inc(len(sorted_.rejected))
        metrics.EVENTS_DEAD_LETTERED.inc(len(sorted_.poison))

    async def _commit(
        self,
        messages: Sequence[Msg],
        events: list[RunnerEvent],
        rejected: list[Rejected],
        poison: list[DeadLetter],
    ) -> None:
        """Commit, retrying until the store takes the batch; JetStream keeps the messages."""
        failures = 0
        last_progress = time.monotonic()
        while True:
            try:
                await asyncio.to_thread(self._audit.record_batch, events, rejected, poison)
                self._failing_commit_since = None
                return
            except Exception as error:
                if self._failing_commit_since is None:
                    self._failing_commit_since = time.monotonic()
                delay = COMMIT_RETRY_SECONDS[min(failures, len(COMMIT_RETRY_SECONDS) - 1)]
                if failures == 0:
                    logger.warning(
                        "the audit store refused a batch of %d events (%s); holding their acks",
                        len(events),
                        type(error).__name__,
                    )
                failures += 1
                metrics.AUDIT_COMMIT_FAILURES.inc()
                await asyncio.sleep(delay)
                if time.monotonic() - last_progress > IN_PROGRESS_EVERY_SECONDS:
                    last_progress = time.monotonic()
                    for message in messages:
                        with contextlib.suppress(Exception):
                            await message.in_progress()

    def _of_current_attempts(self, events: Iterable[RunnerEvent]) -> list[RunnerEvent]:
        """The events that belong to their task's current attempt (or a newer one the status
        does not show yet). Older attempts' events are stored but never reach status.

        Each task's status is parsed once per batch, not once per event."""
        attempts: dict[str, int | None] = {}
        current = []
        for event in events:
            if event.task_uid not in attempts:
                task = self._tasks.task(event.task_uid)
                attempts[event.task_uid] = None if task is None else task.status.attempt
            attempt = attempts[event.task_uid]
            if attempt is not None and event.attempt >= attempt:
                current.append(event)
        return current

    async def _sort(self, messages: Sequence[Msg]) -> _Sorted:
        sorted_ = _Sorted([], [], [])
        for message in messages:
            try:
                outcome = await self._classify(message)
            except Exception as error:  # a bug must not stop every tenant's events
                logger.exception("cannot classify a message on %r", message.subject)
                outcome = _dead_letter(message, f"cannot be classified: {type(error).__name__}")
            sequence = _stream_sequence(message)
            if isinstance(outcome, _Retry):
                self._retrying.add(sequence)
                with contextlib.suppress(Exception):  # unacked, it comes back after ack_wait
                    await message.nak(delay=RETRY_DELAY_SECONDS)
                continue
            self._retrying.discard(sequence)
            if isinstance(outcome, RunnerEvent):
                sorted_.events.append((message, outcome))
            elif isinstance(outcome, Rejected):
                sorted_.rejected.append((message, outcome))
            else:
                sorted_.poison.append((message, outcome))
        return sorted_

    async def _classify(self, message: Msg) -> RunnerEvent | Rejected | DeadLetter | _Retry:
        data, subject = message.data, message.subject

        def poison(reason: str) -> DeadLetter:
            return _dead_letter(message, reason)

        def rejected(reason: str, detail: str, uid: str, namespace: str) -> Rejected:
            return Rejected(
                received_at=_now(),
                subject=subject,
                reason=reason,
                detail=detail,
                task_uid=uid,
                namespace=namespace,
                event_id=None,
                excerpt=_excerpt(data),
            )

        try:
            namespace, uid = parse_subject(subject)
        except ValueError as error:
            return poison(f"not an event subject: {error}")
        try:
            raw = read_event_json(data)  # parsed once: verification reuses it
        except UnreadableEventError as error:
            return poison(str(error))
        task = self._tasks.task(uid)
        if task is None and (deleted := self._tasks.deleted_task(uid, namespace)) is not None:
            # Its runner still flushing as the Job goes: no forgery, nothing to mirror.
            return poison(f"TaskDeleted: task {namespace}/{deleted} was deleted before this event")
        if task is None or task.namespace != namespace:
            return rejected("UnknownTask", "no such task in scope", uid, namespace)
        try:
            key = await self._keys.key_for(namespace, task.name, uid)
        except UnusableSigningKeyError as error:
            return rejected("UnusableSigningKey", str(error), uid, namespace)
        except SigningKeyUnavailableError:
            return _RETRY
        if key is None:
            return rejected("NoSigningKey", "the task has no signing key", uid, namespace)
        try:
            event = verify_event_json(raw, key, subject=subject)
        except EventVerificationError as error:
            return rejected("VerificationFailed", str(error), uid, namespace)
        return event
