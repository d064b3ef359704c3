"""The process kubelet (dev/test only): runs Pods as local processes on a machine without a
container runtime, so the real Job, garbage-collector and TTL controllers can be exercised."""
