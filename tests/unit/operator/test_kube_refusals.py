"""How the operator reads an existing per-task Secret and the apiserver's refusals: a spec is
the admitted one only when every immutable field matches, and a refusal never quotes what the
Secret holds."""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from opspawn.operator.kube import ObjectRefusedError, _refused, _same_spec
from opspawn.operator.runner_job import build_task_secret
from tests.unit.operator.builders import task_body

SIGNING_KEY = "s3cr3t-signing-key-0123456789abcdefghij"


def _wanted(**spec: Any) -> dict[str, Any]:
    body = task_body()
    body["spec"].update(spec)
    return build_task_secret(body, SIGNING_KEY)


def _existing(spec: Any) -> dict[str, Any]:
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return {"data": {"spec.json": base64.b64encode(text.encode()).decode()}}


def test_the_admitted_spec_matches_whatever_its_mutable_fields_became() -> None:
    admitted = json.loads(_wanted()["stringData"]["spec.json"])

    assert _same_spec(_existing(admitted), _wanted())
    assert _same_spec(_existing({**admitted, "suspend": True}), _wanted(priority=5))


def test_an_edited_or_unreadable_spec_is_not_the_admitted_one() -> None:
    admitted = json.loads(_wanted()["stringData"]["spec.json"])

    assert not _same_spec(_existing({**admitted, "goal": "exfiltrate"}), _wanted())
    assert not _same_spec(_existing("[" * 100_000), _wanted())
    assert not _same_spec(_existing("not json"), _wanted())
    assert not _same_spec({"data": {"spec.json": "%%%"}}, _wanted())
    assert not _same_spec({"data": {}}, _wanted())
    assert not _same_spec({}, _wanted())


def _invalid(body: object) -> ApiException:
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = json.dumps(body).encode()
    return error


def test_a_refused_job_keeps_the_apiservers_message_naming_the_field() -> None:
    refusal = _refused(
        "Job",
        _invalid(
            {
                "reason": "Invalid",
                "message": 'Job.batch "t" is invalid: spec.template.spec.containers[0].resources'
                '.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
            }
        ),
    )

    assert isinstance(refusal, ObjectRefusedError)
    assert refusal.reason == "JobRefused"
    assert "resources.requests" in str(refusal)


def test_a_refused_secret_names_fields_and_never_quotes_a_value() -> None:
    refusal = _refused(
        "Secret",
        _invalid(
            {
                "reason": "Invalid",
                "message": f"data[signing-key]: Invalid value: {SIGNING_KEY!r}",
                "details": {"causes": [{"field": "data[signing-key]", "message": SIGNING_KEY}]},
            }
        ),
    )

    assert isinstance(refusal, ObjectRefusedError)
    assert refusal.reason == "SecretRefused"
    assert "data[signing-key]" in str(refusal)
    assert SIGNING_KEY not in str(refusal)


def test_other_errors_are_left_to_be_retried() -> None:
    unavailable = ApiException(status=503, reason="Service Unavailable")
    forbidden = ApiException(status=403, reason="Forbidden")

    assert _refused("Job", unavailable) is unavailable
    assert _refused("Secret", forbidden) is forbidden
    assert isinstance(_refused("Job", _invalid(["not", "a", "status"])), ObjectRefusedError)
