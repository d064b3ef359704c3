"""Which objects count as a task's: only those in its namespace that it controls.

Labels are anyone's to write, so the operator never trusts them for ownership. A Job, Pod or
Secret belongs to a task only when its controller ownerReference names that task's uid and it
lives in the task's namespace (a namespaced owner can only own objects of its own namespace;
the garbage collector treats a reference across namespaces as absent). Everything else is left
alone: never adopted, read for an outcome, or deleted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opspawn.api.agenttask import GROUP, KIND

EXCERPT_CHARS = 2048


def controller_uid(metadata: Mapping[str, Any], *, kind: str, api_group: str) -> str:
    """The uid of the controller ownerReference of `kind` in `api_group` ("" when none)."""
    for reference in metadata.get("ownerReferences") or []:
        if not isinstance(reference, Mapping) or reference.get("controller") is not True:
            continue
        group = str(reference.get("apiVersion", "")).rpartition("/")[0]
        if reference.get("kind") == kind and group == api_group:
            return str(reference.get("uid") or "")
    return ""


def task_controller_uid(metadata: Mapping[str, Any]) -> str:
    """The uid of the AgentTask that controls this object ("" when none does)."""
    return controller_uid(metadata, kind=KIND, api_group=GROUP)


def controlled_by_task(metadata: Mapping[str, Any], namespace: str, task_uid: str) -> bool:
    """Whether the object of `metadata` is the task's: in its namespace and controlled by it."""
    return (
        bool(task_uid)
        and metadata.get("namespace") == namespace
        and task_controller_uid(metadata) == task_uid
    )


def controlled_by_job(metadata: Mapping[str, Any], job_uid: str) -> bool:
    """Whether a Pod is one the Job of `job_uid` created (not one labelled to look so)."""
    return bool(job_uid) and controller_uid(metadata, kind="Job", api_group="batch") == job_uid


def metadata_excerpt(metadata: Mapping[str, Any]) -> str:
    """What a security event keeps of a suspicious object: its claims (labels and
    ownerReferences), never its data."""
    claims = {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "labels": metadata.get("labels") or {},
        "ownerReferences": metadata.get("ownerReferences") or [],
    }
    return json.dumps(claims, default=str, separators=(",", ":"))[:EXCERPT_CHARS]
