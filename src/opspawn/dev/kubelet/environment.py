"""A container's environment, resolved as the kubelet resolves it.

`envFrom` sources first, then `env` entries in order; each `value` is expanded against the
variables defined before it; `valueFrom` reads Secrets, ConfigMaps and the Pod's own fields.
A missing required Secret or ConfigMap is a `ContainerConfigError`, which the kubelet reports
as `CreateContainerConfigError` and retries.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from opspawn.dev.kubelet.expansion import expand_with

KubeObject = dict[str, Any]
Fetch = Callable[[str, str], KubeObject | None]
"""(kind, name) -> the Secret or ConfigMap in the Pod's namespace, or None if absent."""


class ContainerConfigError(Exception):
    """The container cannot be started yet: a referenced Secret, ConfigMap or key is missing."""


_LABEL_OR_ANNOTATION = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: KubeObject, path: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for this Pod."""
    metadata = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_OR_ANNOTATION.match(path)
    if match:
        return str(metadata.get(match.group(1), {}).get(match.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def _key_value(fetch: Fetch, kind: str, selector: KubeObject, *, decode: bool) -> str | None:
    name = selector.get("name", "")
    key = selector.get("key", "")
    optional = bool(selector.get("optional", False))
    obj = fetch(kind, name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    data = obj.get("data") or {}
    if decode:
        if key in data:
            return base64.b64decode(data[key]).decode("utf-8", errors="replace")
    else:
        if key in data:
            return str(data[key])
        binary = obj.get("binaryData") or {}
        if key in binary:
            return base64.b64decode(binary[key]).decode("utf-8", errors="replace")
    if optional:
        return None
    raise ContainerConfigError(
        f"couldn't find key {key} in {kind} {obj['metadata']['namespace']}/{name}"
    )


def _from_source(fetch: Fetch, source: KubeObject) -> dict[str, str]:
    prefix = source.get("prefix", "")
    for kind, field, decode in (
        ("Secret", "secretRef", True),
        ("ConfigMap", "configMapRef", False),
    ):
        if field not in source:
            continue
        reference = source[field]
        obj = fetch(kind, reference.get("name", ""))
        if obj is None:
            if reference.get("optional"):
                return {}
            raise ContainerConfigError(f'{kind.lower()} "{reference.get("name", "")}" not found')
        data = obj.get("data") or {}
        return {
            prefix + key: base64.b64decode(value).decode("utf-8", errors="replace")
            if decode
            else value
            for key, value in data.items()
        }
    return {}


def container_environment(pod: KubeObject, container: KubeObject, fetch: Fetch) -> dict[str, str]:
    """The variables a container starts with, before the kubelet's own additions."""
    variables: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        variables.update(_from_source(fetch, source))
    for entry in container.get("env") or []:
        name = entry["name"]
        value_from = entry.get("valueFrom")
        if value_from is None:
            variables[name] = expand_with(entry.get("value", ""), variables)
            continue
        resolved: str | None
        if "secretKeyRef" in value_from:
            resolved = _key_value(fetch, "Secret", value_from["secretKeyRef"], decode=True)
        elif "configMapKeyRef" in value_from:
            resolved = _key_value(fetch, "ConfigMap", value_from["configMapKeyRef"], decode=False)
        elif "fieldRef" in value_from:
            resolved = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            resolved = _resource_value(container, value_from["resourceFieldRef"])
        else:
            raise ContainerConfigError(f"unsupported valueFrom for env {name}")
        if resolved is not None:
            variables[name] = resolved
    return variables


def _resource_value(container: KubeObject, selector: KubeObject) -> str:
    """`resourceFieldRef`: the container's limit or request as written (no unit conversion)."""
    kind, _, resource = str(selector.get("resource", "")).partition(".")
    values = (container.get("resources") or {}).get(kind) or {}
    return str(values.get(resource, "0"))
