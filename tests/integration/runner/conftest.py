"""Fixtures of the runner's integration tests: a real NATS server, JetStream stream, helpers."""

from __future__ import annotations
