"""Embeddings as the fake model server answers them: deterministic, offline, meaningful enough.

Each text becomes a hashed bag of its lowercase words (`DIMENSIONS` buckets, L2-normalised),
so texts that share words are similar and texts that share none are not: enough for tests of
ranking and recall through the real SDKs, with no model behind it.

Wire formats: OpenAI `POST /v1/embeddings` (`input` a string or a list; floats, or base64 of
little-endian float32 when `encoding_format` is base64, as the SDK asks by default) and Gemini
`POST /{v1,v1beta}/models/{model}:batchEmbedContents` (`requests[].content.parts[].text`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import Any

DIMENSIONS = 64


class EmbeddingRequestError(ValueError):
    """The request is not one the wire format allows."""


def embed_text(text: str) -> list[float]:
    """The hashed bag-of-words vector of `text` (all zeros for a text without words)."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % DIMENSIONS
        vector[bucket] += 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def openai_embeddings(body: Any) -> dict[str, Any]:
    """The answer to an OpenAI embeddings request."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise EmbeddingRequestError("an embeddings request needs a model")
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise EmbeddingRequestError("input must be a string or a non-empty list of strings")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embed_text(text)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(text.split()) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def google_batch_embeddings(body: Any) -> dict[str, Any]:
    """The answer to a Gemini batchEmbedContents request."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise EmbeddingRequestError("batchEmbedContents needs a non-empty list of requests")
    embeddings = []
    for request in requests:
        parts = (request.get("content") or {}).get("parts") if isinstance(request, dict) else None
        if not isinstance(parts, list):
            raise EmbeddingRequestError("each request needs content.parts")
        text = " ".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))
        embeddings.append({"values": embed_text(text)})
    return {"embeddings": embeddings}
