"""docs/crd-reference.md and docs/operator-settings.md are what `make manifests` makes of the
CRD and of `opspawn operator`'s options today, and they show every field, rule and option."""

from __future__ import annotations

from typing import Any

import click

from opspawn.dev.crd_doc import crd_reference
from opspawn.dev.reference_docs import ROOT, reference_docs
from opspawn.dev.settings_doc import operator_settings_reference


def test_generated_references_are_current() -> None:
    for path, text in reference_docs().items():
        assert (ROOT / path).exists(), f"{path} is missing: run `make manifests`"
        assert (ROOT / path).read_text() == text, (
            f"{path} is stale: run `make manifests` and commit the result"
        )


def _crd(spec_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": {
            "group": "example.io",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "properties": {
                                "spec": spec_schema,
                                "status": {"type": "object", "properties": {}},
                            }
                        }
                    },
                }
            ],
        }
    }


def test_crd_reference_shows_nested_fields_defaults_constraints_and_rules() -> None:
    spec = {
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 9, "default": 3},
            "labels": {
                "type": "object",
                "maxProperties": 4,
                "additionalProperties": {"type": "string", "description": "A <label>."},
            },
            "parts": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
        "x-kubernetes-validations": [
            {"rule": "self.size < 5 || has(self.parts)", "message": "big widgets need parts"}
        ],
    }
    reference = crd_reference(_crd(spec))
    assert "| `spec.size` | integer | yes | `3` | ≥ 1; ≤ 9 |  |" in reference
    assert "| `spec.labels` | map[string]string |  |  | entries ≤ 4 |  |" in reference
    assert "| `spec.labels.*` | string |  |  |  | A &lt;label>. |" in reference
    assert "| `spec.parts[].name` | string |" in reference
    assert (
        "| `spec` | big widgets need parts | `self.size < 5 \\|\\| has(self.parts)` |" in reference
    )


def test_operator_settings_reference_shows_variable_value_and_default() -> None:
    @click.command(context_settings={"auto_envvar_prefix": "APP"})
    @click.option("--url", required=True, help="Where to go (a_b).")
    @click.option("--tag", "tags", multiple=True, metavar="K=V")
    @click.option("--level", type=click.Choice(["low", "high"]), default="low")
    @click.option("--cache/--no-cache", default=False)
    @click.option("--store", envvar=["APP_STORE", "STORE"], type=click.IntRange(0, 9), default=2)
    def app(**_: Any) -> None: ...

    rows = operator_settings_reference(app).splitlines()
    assert "| `--url` | `APP_URL` | text | required | Where to go (a\\_b). |" in rows
    assert "| `--tag` | `APP_TAGS` | `K=V` (repeatable) |  |  |" in rows
    assert "| `--level` | `APP_LEVEL` | `low` \\| `high` | `low` |  |" in rows
    assert "| `--cache/--no-cache` | `APP_CACHE` | flag | `--no-cache` |  |" in rows
    assert "| `--store` | `APP_STORE`, `STORE` | integer 0 to 9 | `2` |  |" in rows
