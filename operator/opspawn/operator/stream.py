"""The JetStream stream runner events go to: the operator creates it, runners only publish.

One stream, `OPSPAWN_EVENTS`, file storage, subjects `opspawn.events.>`, a duplicate window of
ten minutes (a runner's retried publish within it is dropped by JetStream; Postgres dedups the
rest by event id) and limits on age and size so a forgotten stream cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from opspawn.api.events import DUPLICATE_WINDOW_SECONDS, STREAM_NAME, stream_subjects
from opspawn.operator.nats_auth import connect_options

logger = logging.getLogger(__name__)

RETRY_SECONDS = (1, 2, 5, 10, 30)


@dataclass(frozen=True)
class StreamSettings:
    max_age_seconds: int = 7 * 24 * 3600
    """Events older than this are dropped from the stream (the audit store keeps them)."""
    max_bytes: int = 1 << 30
    """The stream's size cap; the oldest events go first."""
    duplicate_window_seconds: int = DUPLICATE_WINDOW_SECONDS


def stream_config(settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=STREAM_NAME,
        subjects=stream_subjects(),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=settings.max_age_seconds,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_seconds,
    )


async def ensure_stream(
    nats_url: str, settings: StreamSettings, credentials: str | None = None
) -> None:
    """Create the stream, or bring an existing one's configuration up to date (`credentials`:
    the operator's NATS user, `.creds` text)."""
    connection = await nats.connect(
        nats_url.split(","),
        connect_timeout=5,
        max_reconnect_attempts=1,
        **connect_options(credentials),
    )
    try:
        jetstream = connection.jetstream()
        config = stream_config(settings)
        try:
            await jetstream.stream_info(STREAM_NAME)
        except NotFoundError:
            await jetstream.add_stream(config)
            logger.info("created the JetStream stream %s", STREAM_NAME)
        else:
            await jetstream.update_stream(config)
    finally:
        await connection.close()


async def keep_ensuring_stream(
    nats_url: str, settings: StreamSettings, credentials: str | None = None
) -> None:
    """`ensure_stream` until it succeeds, with backoff: NATS may start after the operator."""
    failures = 0
    while True:
        try:
            await ensure_stream(nats_url, settings, credentials)
            return
        except Exception as error:
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            logger.warning("cannot set up the JetStream stream (%s); retrying in %ss", error, delay)
            await asyncio.sleep(delay)
