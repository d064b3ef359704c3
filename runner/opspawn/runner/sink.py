"""Where the agent loop sends its events: the JetStream publisher, or anything alike."""

from __future__ import annotations

from typing import Protocol

from opspawn.api.events import EventPayload


class EventSink(Protocol):
    """Takes the payloads of runner events, in order (`EventPublisher` is one)."""

    async def emit(self, payload: EventPayload, /) -> object: ...
