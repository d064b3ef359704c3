"""Which model `make demo` runs: a real provider when its API key is exported, else the mock.

The key is read from the environment and goes into the demo namespace's Secret only (created
through the API, so it is in no command line, file or output); the task refers to it with
`apiKeySecretRef` like any other task. The SDKs' own base-URL variables (`OPENAI_BASE_URL` …)
send the provider's calls elsewhere, e.g. to an LLM gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY_FIELD = "api-key"
"""The Secret key the task's `apiKeySecretRef` names."""
MOCK_KEY = "mock-model-accepts-any-key"


@dataclass(frozen=True)
class Provider:
    name: str
    model: str
    """A small model with a known price, so the demo shows its cost."""
    key_variables: tuple[str, ...]
    base_url_variable: str


PROVIDERS = (
    Provider("openai", "gpt-4.1-mini", ("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
    Provider("anthropic", "claude-haiku-4-5", ("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL"),
    Provider(
        "google", "gemini-2.5-flash", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GOOGLE_GEMINI_BASE_URL"
    ),
)
"""In order of preference, when several keys are exported."""
MOCK = PROVIDERS[0]
"""Without a key the example runs as written (OpenAI), answered by the mock model."""


@dataclass(frozen=True)
class DemoModel:
    provider: Provider
    key_variable: str | None
    """Where the real key comes from; None: the mock model answers."""
    base_url: str | None = None
    """The provider's endpoint from its base-URL variable; None: the provider's own."""

    @property
    def real(self) -> bool:
        return self.key_variable is not None

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        if self.real:
            return (
                f"{self.provider.name}/{self.provider.model}{where} (key from ${self.key_variable})"
            )
        keys = ", ".join(v for p in PROVIDERS for v in p.key_variables)
        return f"the mock model (export one of {keys} to use a real provider)"

    def spec_model(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """The example's `spec.model`, on this provider, with the demo's key Secret."""
        model = dict(example)
        if self.real:
            model.update(provider=self.provider.name, name=self.provider.model)
        model["apiKeySecretRef"] = {"name": self.provider.name, "key": KEY_FIELD}
        return model

    def key_secret(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The Secret holding the key (the mock model accepts any)."""
        key = environ[self.key_variable] if self.key_variable else MOCK_KEY
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.provider.name},
            "stringData": {KEY_FIELD: key.strip()},
        }


def choose_model(environ: Mapping[str, str]) -> DemoModel:
    """The first provider whose key is exported, else the mock model."""
    for provider in PROVIDERS:
        for variable in provider.key_variables:
            if environ.get(variable, "").strip():
                base_url = environ.get(provider.base_url_variable, "").strip() or None
                return DemoModel(provider, variable, base_url)
    return DemoModel(MOCK, None)
