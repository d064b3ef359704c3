"""Embedders of the model providers, through their SDKs: OpenAI (and OpenAI-compatible
servers) `embeddings.create`, Gemini `models.embedContent`.

They use the task's API key and endpoint. Errors come back as `EmbeddingError` with the
provider's HTTP status or the kind of failure, never with the key.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx2

from opspawn.api.memory_spaces import space_name
from opspawn.runner.memory.embedding import EmbeddingError

TIMEOUT_SECONDS = 30.0


class OpenAIEmbedder:
    """`embeddings.create` of OpenAI or an OpenAI-compatible server."""

    def __init__(
        self, *, provider: str, model: str, api_key: str, base_url: str | None = None
    ) -> None:
        import openai

        self.space = space_name(provider, model)
        self._model = model
        self._sdk = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=2, timeout=TIMEOUT_SECONDS
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        try:
            response = await self._sdk.embeddings.create(model=self._model, input=list(texts))
        except openai.APIStatusError as error:
            raise EmbeddingError(f"embeddings request refused: HTTP {error.status_code}") from None
        except openai.OpenAIError as error:
            raise EmbeddingError(f"embeddings request failed: {type(error).__name__}") from None
        ordered = sorted(response.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered]

    async def aclose(self) -> None:
        await self._sdk.close()


class GoogleEmbedder:
    """Gemini `models.embedContent`."""

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None) -> None:
        from google import genai
        from google.genai import types

        self.space = space_name("google", model)
        self._model = model
        self._http = httpx2.AsyncClient()
        self._sdk = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(TIMEOUT_SECONDS * 1000),
                retry_options=types.HttpRetryOptions(attempts=3),
                httpx_async_client=self._http,
            ),
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from google.genai import errors, types

        contents = [types.Content(parts=[types.Part(text=text)]) for text in texts]
        try:
            response = await self._sdk.aio.models.embed_content(
                model=self._model, contents=contents
            )
        except errors.APIError as error:
            raise EmbeddingError(f"embeddings request refused: HTTP {error.code}") from None
        except httpx2.HTTPError as error:
            raise EmbeddingError(f"embeddings request failed: {type(error).__name__}") from None
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise EmbeddingError(f"{len(texts)} texts sent, {len(embeddings)} embeddings received")
        return [list(item.values or []) for item in embeddings]

    async def aclose(self) -> None:
        await self._sdk.aio.aclose()
        await self._http.aclose()
