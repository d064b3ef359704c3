"""A point in monotonic time by which the whole run must be over."""

from __future__ import annotations

import math
import time


class Deadline:
    """A monotonic deadline (`time.monotonic()` based, so wall-clock jumps do not move it)."""

    def __init__(self, at: float) -> None:
        self.at = at
        """The deadline as a `time.monotonic()` value; `math.inf` for none."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"
