"""The interface every model client implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.types import Message, ModelResponse, ToolSpec


class ModelClient(Protocol):
    """One model of one provider, called turn by turn by the agent loop."""

    @property
    def provider(self) -> str:
        """Provider name as in the task spec: openai, anthropic, google, openai-compatible."""
        ...

    @property
    def model(self) -> str:
        """Model name as in the task spec."""
        ...

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        output_schema: Mapping[str, Any] | None,
        deadline: Deadline,
    ) -> ModelResponse:
        """The model's next turn after `messages`.

        `tools` are offered to the model; several calls may come back in one turn, each with
        an id that the `ToolResult`s of the next tool message must repeat. `output_schema`
        asks for a final answer that is JSON matching the schema, where the provider can
        enforce it (the caller still validates). The call is retried on transient failures
        and raises a `ModelError` (see `opspawn.runner.model.errors`) when it cannot succeed,
        `DeadlineExceededError` when `deadline` leaves no time.
        """
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...
