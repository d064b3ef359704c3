"""Keeping secrets out of what the runner writes: events, logs, the termination message."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4
"""Shorter values are not replaced (they would blank out ordinary text)."""


class Redactor:
    """Replaces every known secret value in a text."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted(
            {secret for secret in secrets if secret and len(secret) >= MIN_SECRET_CHARS},
            key=len,
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
