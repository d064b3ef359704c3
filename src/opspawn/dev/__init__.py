"""The local development and test stack.

Everything here starts real components as local processes: etcd, kube-apiserver and
kube-controller-manager (the control plane), the process kubelet, NATS with JetStream and
Postgres. `opspawn dev up` and the pytest fixtures use the same code.
"""
