"""Whatever a per-task Secret holds under `signing-key`, SigningKeys answers with a key, None,
UnusableSigningKeyError or SigningKeyUnavailableError, and never reads a bad Secret twice
within its cache time."""

from __future__ import annotations

import pytest

from opspawn.operator.signing_keys import (
    SigningKeys,
    SigningKeyUnavailableError,
    UnusableSigningKeyError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SecretsOf:
    """Stands in for KubeClient.task_signing_key: what the Secret decodes to, or an error."""

    def __init__(self, answer: bytes | Exception | None) -> None:
        self.answer = answer
        self.reads = 0

    async def task_signing_key(self, namespace: str, secret_name: str, uid: str) -> bytes | None:
        self.reads += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def keys(answer: bytes | Exception | None) -> tuple[SigningKeys, SecretsOf]:
    kube = SecretsOf(answer)
    return SigningKeys(kube), kube  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"", b"x", b"\xff" * 15])
async def test_a_short_key_is_unusable_and_remembered(content: bytes) -> None:
    signing_keys, kube = keys(content)
    for _ in range(3):
        with pytest.raises(UnusableSigningKeyError, match=f"{len(content)} bytes"):
            await signing_keys.key_for("ns", "task", "uid")
    assert kube.reads == 1


async def test_undecodable_data_is_unusable() -> None:
    signing_keys, _ = keys(ValueError("Incorrect padding"))
    with pytest.raises(UnusableSigningKeyError, match="cannot be decoded"):
        await signing_keys.key_for("ns", "task", "uid")


async def test_an_api_failure_is_worth_a_retry_and_not_remembered() -> None:
    signing_keys, kube = keys(RuntimeError("503 from the apiserver"))
    for _ in range(2):
        with pytest.raises(SigningKeyUnavailableError):
            await signing_keys.key_for("ns", "task", "uid")
    assert kube.reads == 2


async def test_a_binary_key_of_enough_bytes_is_a_key() -> None:
    signing_keys, kube = keys(b"\x00\xff" * 16)
    key = await signing_keys.key_for("ns", "task", "uid")
    assert key is not None and len(key.sign(b"m")) == 64
    assert await signing_keys.key_for("ns", "task", "uid") is key
    assert kube.reads == 1


async def test_no_secret_is_no_key() -> None:
    signing_keys, _ = keys(None)
    assert await signing_keys.key_for("ns", "task", "uid") is None
