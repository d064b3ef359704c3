"""Publish the runner's events to JetStream: signed, numbered, in order, each one acknowledged.

`EventPublisher.emit` numbers an event (sequence 1, 2, … per attempt), signs it and puts it in
a queue; one worker publishes the queue in order, waiting for JetStream's acknowledgement of an
event before it sends the next, so the stream holds the events in sequence order. Every publish
carries the event id as `Nats-Msg-Id`: when an acknowledgement is lost (a timeout, a NATS server
restart) the worker publishes the same event again and JetStream drops the duplicate.

A publish is retried (exponential backoff with jitter) on transient errors until it is
acknowledged or `PublisherSettings.deadline_seconds` has passed; nats-py reconnects underneath
(forever, until the publisher closes). An event that misses its deadline fails the publisher:
later events are dropped without being sent, `emit`, `flush` and `close` raise
EventDeliveryError, and the runner should end the attempt with `RunnerExitCode.TRANSIENT`. Its
final result is not lost with the events: it also goes to the termination message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials
from nats.js.client import JetStreamContext
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential_jitter,
)

from opspawn.api.events import (
    MSG_ID_HEADER,
    STREAM_NAME,
    EventPayload,
    RunnerEvent,
    SigningKey,
    TaskRef,
    build_event,
    runner_inbox,
    sign_event,
)

logger = logging.getLogger(__name__)

TRANSIENT_PUBLISH_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)
"""Errors after which the same publish may succeed: NATS is away, restarting or busy."""


class EventDeliveryError(RuntimeError):
    """An event was not acknowledged by JetStream before its deadline (or could not be sent)."""


@dataclass(frozen=True)
class PublisherSettings:
    """How hard the publisher tries."""

    deadline_seconds: float = 120.0
    """Give up on an event this long after its first publish attempt."""
    ack_timeout_seconds: float = 5.0
    """Wait this long for one acknowledgement before publishing again."""
    max_backoff_seconds: float = 2.0
    """Longest pause between two publish attempts of one event."""
    queue_size: int = 1024
    """Events waiting to be published at most; `emit` waits for room beyond that."""
    connect_timeout_seconds: int = 5
    """Time limit of one connection attempt to NATS."""
    reconnect_wait_seconds: int = 1
    """Pause between reconnection attempts after the connection to NATS is lost."""


class EventPublisher:
    """Publishes the events of one task attempt to the event stream.

    Create it inside the running event loop (its worker starts at once), or use `connect`.
    Use as `async with`, or call `close()` at the end: both wait for every emitted event.
    """

    def __init__(
        self,
        nc: NatsClient,
        task: TaskRef,
        key: SigningKey,
        settings: PublisherSettings | None = None,
        *,
        owns_connection: bool = False,
    ) -> None:
        self.task = task
        self.settings = settings or PublisherSettings()
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._key = key
        self._owns_connection = owns_connection
        self._subject = task.subject
        self._sequence = 0
        self._acknowledged = 0
        self._failure: EventDeliveryError | None = None
        self._closed = False
        self._queue: asyncio.Queue[RunnerEvent] = asyncio.Queue(self.settings.queue_size)
        self._emitting = asyncio.Lock()  # numbering and queueing happen in one order
        self._worker = asyncio.create_task(self._publish_queue(), name=f"events:{self._subject}")

    @classmethod
    async def connect(
        cls,
        servers: str | list[str],
        task: TaskRef,
        key: SigningKey,
        settings: PublisherSettings | None = None,
        *,
        credentials: str | None = None,
    ) -> Self:
        """Connect to NATS (retrying until the deadline) and return a publisher owning that
        connection, which reconnects for as long as the publisher is open. `credentials` is
        the text of a `.creds` file (the task's NATS user), None for a NATS without auth."""
        settings = settings or PublisherSettings()
        auth: dict[str, Any] = {}
        if credentials is not None:
            auth = {
                "user_credentials": RawCredentials(credentials),
                "inbox_prefix": runner_inbox(task.task_uid).encode(),
            }
        nc = NatsClient()

        async def error_cb(error: Exception) -> None:
            logger.warning("NATS connection error: %s", error)

        async def disconnected_cb() -> None:
            if not nc.is_closed:  # a normal close is not worth a warning
                logger.warning("disconnected from NATS; reconnecting")

        async def reconnected_cb() -> None:
            logger.info("reconnected to NATS")

        retrying = AsyncRetrying(
            stop=stop_before_delay(settings.deadline_seconds),
            wait=wait_exponential_jitter(initial=0.1, max=settings.max_backoff_seconds),
            retry=retry_if_exception_type((OSError, nats.errors.NoServersError, TimeoutError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await nc.connect(
                    servers,
                    name=f"opspawn-runner {task.namespace}/{task.task_name}#{task.attempt}",
                    connect_timeout=settings.connect_timeout_seconds,
                    reconnect_time_wait=settings.reconnect_wait_seconds,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=error_cb,
                    disconnected_cb=disconnected_cb,
                    reconnected_cb=reconnected_cb,
                    **auth,
                )
        return cls(nc, task, key, settings, owns_connection=True)

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last event emitted (0 before the first)."""
        return self._sequence

    @property
    def last_acknowledged(self) -> int:
        """Sequence number of the last event JetStream acknowledged."""
        return self._acknowledged

    async def emit(self, payload: EventPayload) -> RunnerEvent:
        """Number, sign and queue an event; returns it as it will be published.

        Safe to call from concurrent tasks: events are numbered in the order they are queued.
        Waits only when the queue is full. Raises EventDeliveryError once the publisher failed,
        and RuntimeError after `close`.
        """
        async with self._emitting:
            if self._closed:
                raise RuntimeError("the event publisher is closed")
            self._raise_failure()
            sequence = self._sequence + 1
            event = sign_event(build_event(self.task, sequence, payload), self._key)
            await self._queue.put(event)
            # Numbered only once queued: an emit cancelled while the queue is full leaves no gap.
            self._sequence = sequence
        self._raise_failure()
        return event

    async def flush(self, wait_seconds: float | None = None) -> None:
        """Wait until every emitted event is acknowledged; EventDeliveryError if one was not,
        or if `wait_seconds` pass first (e.g. within a SIGTERM grace period)."""
        try:
            async with asyncio.timeout(wait_seconds):
                await self._queue.join()
        except TimeoutError:
            pending = self._sequence - self._acknowledged
            raise EventDeliveryError(
                f"{pending} events were not acknowledged by JetStream within {wait_seconds:g}s"
            ) from None
        self._raise_failure()

    async def close(self, wait_seconds: float | None = None) -> None:
        """Flush (see `flush`), stop the worker, and close the NATS connection if the publisher
        owns it. Events still unacknowledged are abandoned after an EventDeliveryError."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush(wait_seconds)
        finally:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            if self._owns_connection:
                try:
                    await self._nc.close()
                except (OSError, nats.errors.Error) as error:  # NATS is away: nothing to flush
                    logger.warning("closing the NATS connection: %s", error)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _publish_queue(self) -> None:
        """The worker: publish queued events one by one, in order."""
        while True:
            event = await self._queue.get()
            try:
                if self._failure is None:
                    await self._publish(event)
                    self._acknowledged = event.sequence
            except Exception as error:  # every failure ends delivery; reported by flush/close
                self._failure = EventDeliveryError(
                    f"event {event.id} ({event.type}) was not acknowledged by JetStream within "
                    f"{self.settings.deadline_seconds:g}s: {type(error).__name__}: {error}; "
                    "later events of this attempt are not published"
                )
                logger.error("%s", self._failure)
            finally:
                self._queue.task_done()

    async def _publish(self, event: RunnerEvent) -> None:
        data = event.to_bytes()
        retrying = AsyncRetrying(
            stop=stop_before_delay(self.settings.deadline_seconds),
            wait=wait_exponential_jitter(initial=0.05, max=self.settings.max_backoff_seconds),
            retry=retry_if_exception_type(TRANSIENT_PUBLISH_ERRORS),
            before_sleep=_log_retry(event),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                ack = await self._js.publish(
                    self._subject,
                    data,
                    timeout=self.settings.ack_timeout_seconds,
                    stream=STREAM_NAME,
                    headers={MSG_ID_HEADER: self._key.message_id(event.id)},
                )
                if ack.duplicate:
                    logger.debug("event %s was already in the stream", event.id)


def _log_retry(event: RunnerEvent) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "publishing event %s failed (attempt %d, %s); retrying",
            event.id,
            state.attempt_number,
            type(error).__name__,
        )

    return log
