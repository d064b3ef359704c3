"""A real Kubernetes node on this machine (containerd, kubelet, kube-scheduler, kube-proxy,
kube-router) beside the local control plane; see docs/local-stack.md."""
