"""Model providers behind one provider-neutral interface.

`build_model_client(spec, api_key=...)` gives a `ModelClient` for a task's `ModelSpec`; its
`complete(messages, tools, output_schema=..., deadline=...)` returns the model's next turn as
a `ModelResponse`. Failures are `ModelError`s (after retries); usage is priced with a
`UsageLedger` over a `PriceTable`.
"""

from opspawn.runner.model.base import ModelClient
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.model.errors import (
    DeadlineExceededError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelRequestError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
)
from opspawn.runner.model.factory import build_model_client
from opspawn.runner.model.ledger import LedgerEntry, UsageLedger
from opspawn.runner.model.pricing import ModelPrice, PriceTable
from opspawn.runner.model.retry import RetryPolicy
from opspawn.runner.model.types import (
    Message,
    ModelResponse,
    Role,
    StopReason,
    TextPart,
    ThinkingPart,
    TokenUsage,
    ToolCall,
    ToolResult,
    ToolSpec,
)

__all__ = [
    "Deadline",
    "DeadlineExceededError",
    "LedgerEntry",
    "Message",
    "ModelAuthError",
    "ModelClient",
    "ModelConnectionError",
    "ModelError",
    "ModelPrice",
    "ModelRateLimitError",
    "ModelRequestError",
    "ModelResponse",
    "ModelResponseError",
    "ModelServerError",
    "ModelTimeoutError",
    "PriceTable",
    "RetryPolicy",
    "Role",
    "StopReason",
    "TextPart",
    "ThinkingPart",
    "TokenUsage",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "UsageLedger",
    "build_model_client",
]
