"""The chart's ValidatingAdmissionPolicy checks every Secret reference the AgentTask API has:
a reference added to the models without a check here would reopen the confused deputy
(tests/security/test_admission_secret_access.py runs the attack)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from opspawn.api.agenttask import AgentTaskSpec, SecretKeyRef
from opspawn.dev.helm import template


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (through Optional, lists and maps)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def secret_reference_paths(model: type[BaseModel], prefix: str) -> list[str]:
    """Wire paths of every SecretKeyRef field under `model`."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        for inner in _models_in(field.annotation):
            if inner is SecretKeyRef:
                paths.append(path)
            else:
                paths += secret_reference_paths(inner, path)
    return paths


def _policy() -> dict[str, Any]:
    (policy,) = [o for o in template({}) if o["kind"] == "ValidatingAdmissionPolicy"]
    return policy


def test_the_api_has_the_secret_references_this_test_knows() -> None:
    assert secret_reference_paths(AgentTaskSpec, "spec") == ["spec.model.apiKeySecretRef"]


def test_every_secret_reference_is_authorized_and_named_in_the_refusal() -> None:
    spec = _policy()["spec"]
    expressions = " ".join(v["expression"] for v in spec["variables"])
    for path in secret_reference_paths(AgentTaskSpec, "spec"):
        object_path = path.replace("spec.", "object.spec.", 1)
        assert object_path in expressions, f"{path} is not checked by the admission policy"
        (validation,) = [v for v in spec["validations"] if path in v["messageExpression"]]
        assert "authorizer.group('').resource('secrets')" in validation["expression"]
        assert ".check('get').allowed()" in validation["expression"]
    assert spec["failurePolicy"] == "Fail"


def test_the_policy_is_bound_to_deny() -> None:
    objects = template({})
    (binding,) = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == _policy()["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_the_policy_comes_with_the_charts_authorization_objects() -> None:
    """A platform team that brings its own RBAC (rbac.create: false) installs it with them."""
    kinds = {o["kind"] for o in template({"rbac": {"create": False}})}
    assert not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
