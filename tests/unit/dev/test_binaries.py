from __future__ import annotations

from opspawn.dev.binaries import _staging_replaces

KUBERNETES_GO_MOD = """
module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tgo.etcd.io/etcd/client/v3 v3.6.8
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_modules_are_pinned_to_the_matching_v0_release() -> None:
    assert _staging_replaces(KUBERNETES_GO_MOD, "v1.36.3") == [
        "replace k8s.io/api => k8s.io/api v0.36.3",
        "replace k8s.io/client-go => k8s.io/client-go v0.36.3",
    ]
