"""The offline embedder: WordLlama's `l2_supercat` 256-dimensional model, whose weights ship
in the `wordllama` wheel. It is loaded from the package folder with downloads disabled, so it
never reaches for a model hub: memory works without any network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from opspawn.api.memory_spaces import WORDLLAMA_CONFIG, WORDLLAMA_DIMENSIONS, WORDLLAMA_SPACE
from opspawn.runner.memory.embedding import EmbeddingError


class _Model(Protocol):
    """What is used of `wordllama.inference._Model` (the package is untyped)."""

    def embed(self, texts: list[str], norm: bool = False) -> Any: ...


class WordLlamaEmbedder:
    """Embeds with WordLlama; the model is loaded on first use (about a second)."""

    space = WORDLLAMA_SPACE

    def __init__(self) -> None:
        self._model: _Model | None = None
        self._lock = asyncio.Lock()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = await self._loaded()
        vectors = await asyncio.to_thread(model.embed, list(texts), norm=True)
        return [[float(value) for value in row] for row in vectors]

    async def _loaded(self) -> _Model:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(_load)
            return self._model

    async def aclose(self) -> None:
        self._model = None


def _load() -> _Model:
    import wordllama  # type: ignore[import-untyped]

    try:
        model: _Model = wordllama.WordLlama.load(
            config=WORDLLAMA_CONFIG,
            dim=WORDLLAMA_DIMENSIONS,
            cache_dir=Path(wordllama.__file__).parent,
            disable_download=True,
        )
    except (OSError, ValueError) as error:
        raise EmbeddingError(f"cannot load the WordLlama model: {error}") from None
    return model
