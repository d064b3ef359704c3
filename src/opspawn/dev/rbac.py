"""RBAC for the identities of the local stack (process kubelet, operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config


def grant_cluster_role(kubeconfig: Path, name: str, user: str, rules: list[dict[str, Any]]) -> None:
    """Create (or update) ClusterRole `name` with `rules` and bind it to client-certificate
    user `user`."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        rbac = client.RbacAuthorizationV1Api(api)
        role = {"metadata": {"name": name}, "rules": rules}
        binding = {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        try:
            rbac.create_cluster_role(role)
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise
            rbac.replace_cluster_role(name, role)
        try:
            rbac.create_cluster_role_binding(binding)
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise
    finally:
        api.close()
