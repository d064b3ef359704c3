"""What the operator may do in the Kubernetes API: the rules of its (Cluster)Role.

The Helm chart and the dev stack grant exactly these (a test keeps the chart in line). They
are the least the reconcile needs: no access to Pods beyond listing them for exit codes, no
reading of Secrets beyond `get` (the API-key check and adopting the per-task Secret), no
Namespaces, no CRDs (kopf's scanning is off).
"""

from __future__ import annotations

from typing import Any

from opspawn.api.agenttask import GROUP, PLURAL

OPERATOR_RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    # Creating children with blockOwnerDeletion needs this where the
    # OwnerReferencesPermissionEnforcement admission plugin is on.
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]},
    # Each namespace's Weaviate key (`memory_access`), rewritten after a rotation; no other
    # Secret can be changed.
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["opspawn-memory"],
        "verbs": ["patch"],
    },
    # `list`: the Job controller's FailedCreate Events say why a runner Pod cannot be made.
    {
        "apiGroups": ["", "events.k8s.io"],
        "resources": ["events"],
        "verbs": ["create", "patch", "list"],
    },
]
