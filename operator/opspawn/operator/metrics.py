"""Prometheus metrics of the operator, and the HTTP endpoint that serves them with the probes.

`/metrics` (Prometheus text format), `/healthz` (liveness: the event loop answers) and
`/readyz` (readiness: the watch caches are filled and the workers run) share one port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

QUEUE_DEPTH = Gauge("opspawn_tasks_queued", "AgentTasks waiting for a concurrency slot")
RUNNING = Gauge("opspawn_tasks_running", "AgentTasks holding a concurrency slot (a live Job)")
LAUNCHED = Counter(
    "opspawn_attempts_launched_total", "Runner Jobs created (attempts started)", ["namespace"]
)
FINISHED = Counter(
    "opspawn_tasks_finished_total", "AgentTasks that reached a terminal phase", ["phase", "reason"]
)
RECONCILE_SECONDS = Histogram(
    "opspawn_reconcile_duration_seconds",
    "Time of one reconcile of one AgentTask",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter("opspawn_reconcile_errors_total", "Reconciles that raised")
API_REQUESTS = Counter(
    "opspawn_api_requests_total",
    "Kubernetes API requests made by the reconcile (watches not included)",
    ["verb", "resource", "code"],
)

EVENTS_INGESTED = Counter(
    "opspawn_events_ingested_total", "Runner events verified and committed to the audit store"
)
EVENTS_REJECTED = Counter(
    "opspawn_events_rejected_total",
    "Runner events rejected (forged, misrouted, unknown task, stale attempt)",
)
EVENTS_DEAD_LETTERED = Counter(
    "opspawn_events_dead_lettered_total", "Poison messages (oversized, not JSON) terminated"
)
CONSUMER_RECREATED = Counter(
    "opspawn_event_consumer_recreated_total",
    "Times the durable event consumer was found missing and created again",
)
AUDIT_COMMIT_FAILURES = Counter(
    "opspawn_audit_commit_failures_total", "Batch commits the audit store refused (retried)"
)


@contextmanager
def api_call(verb: str, resource: str) -> Iterator[None]:
    """Count one API request by its outcome (HTTP status; 0 for a transport error)."""
    code = "200"
    try:
        yield
    except ApiException as error:
        code = str(error.status)
        raise
    except Exception:
        code = "0"
        raise
    finally:
        API_REQUESTS.labels(verb, resource, code).inc()


@contextmanager
def reconcile_timer() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - started)


class HealthServer:
    """Serves /metrics, /healthz and /readyz; `ready` is asked on every /readyz."""

    def __init__(self, address: str, port: int, ready: Callable[[], bool]) -> None:
        self._address = address
        self._port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._address, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="watch caches not filled yet")
