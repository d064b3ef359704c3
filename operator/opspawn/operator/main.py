"""`opspawn operator`: kopf's watches, the reconcile workers and the health endpoint, in one
event loop, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING

import kopf
from kubernetes_asyncio.client import ApiClient

from opspawn.operator.audit import AuditStore
from opspawn.operator.consumer import ConsumerSettings, EventConsumer, durable_name
from opspawn.operator.handlers import build_registry
from opspawn.operator.kopf_config import operator_identity
from opspawn.operator.kube import KubeClient, load_api_client
from opspawn.operator.metrics import HealthServer
from opspawn.operator.mirror import StatusMirror
from opspawn.operator.reconciler import Reconciler
from opspawn.operator.settings import OperatorSettings
from opspawn.operator.signing_keys import SigningKeys
from opspawn.operator.stream import keep_ensuring_stream
from opspawn.operator.views import JobView, TaskView

if TYPE_CHECKING:
    from opspawn.operator.memory_access import MemoryAccess

logger = logging.getLogger(__name__)


async def _initial_sync(
    kube: KubeClient, settings: OperatorSettings, reconciler: Reconciler
) -> None:
    """Fill the store from one LIST of each resource (kopf's watches keep it current). Only
    the views are kept, a page at a time: the listed bodies, once held in the operator's
    long-lived frame, were most of its memory with thousands of tasks."""
    tasks = await kube.list_tasks(settings.namespaces, TaskView.from_body)
    jobs = await kube.list_runner_jobs(settings.namespaces, JobView.from_body)
    reconciler.start(tasks, jobs)


def _operator_nats_credentials(settings: OperatorSettings) -> str | None:
    """The operator's own NATS user (JetStream API and acks), when NATS auth is on."""
    issuer = settings.runner.nats_issuer
    return None if issuer is None else issuer.operator_credentials()


def _event_pipeline(
    settings: OperatorSettings, kube: KubeClient, reconciler: Reconciler, audit: AuditStore
) -> tuple[EventConsumer, StatusMirror]:
    """The consumer and the status mirror."""
    mirror = StatusMirror(
        kube,
        reconciler.store,
        settings.mirror_interval_seconds,
        settings.mirror_writes_in_flight,
    )
    consumer = EventConsumer(
        nats_url=settings.runner.nats_url,
        namespaces=settings.namespaces,
        audit=audit,
        keys=SigningKeys(kube),
        tasks=reconciler.store,
        mirror=mirror,
        ready=reconciler.wait_ready,
        settings=ConsumerSettings(durable=durable_name(settings.namespaces)),
        credentials=_operator_nats_credentials(settings),
    )
    return consumer, mirror


async def _open_audit_store(settings: OperatorSettings) -> AuditStore | None:
    if settings.database_url is None:
        logger.warning("no --database-url: runner events are neither stored nor mirrored")
        return None
    audit = AuditStore(settings.database_url)
    if settings.migrate:
        await asyncio.to_thread(audit.migrate)
    return audit


def kopf_operator(
    registry: kopf.OperatorRegistry, namespaces: Sequence[str]
) -> Coroutine[None, None, None]:
    """kopf's part of the operator: standalone, under the operator's own identity."""
    return kopf.operator(
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        identity=operator_identity(),
    )


def _memory_access(settings: OperatorSettings, api: ApiClient) -> MemoryAccess | None:
    """Per-namespace Weaviate credentials, when the operator has a Weaviate; the Weaviate
    client (with gRPC) is imported only then."""
    if settings.runner.weaviate_url is None:
        return None
    from opspawn.operator.memory_access import memory_access

    return memory_access(settings, api)


async def run_operator(settings: OperatorSettings, kubeconfig: str | None = None) -> None:
    api = await load_api_client(kubeconfig)
    kube = KubeClient(api)
    audit = await _open_audit_store(settings)
    memory = _memory_access(settings, api)
    reconciler = Reconciler(settings, kube, audit=audit, memory=memory)
    pipeline = None if audit is None else _event_pipeline(settings, kube, reconciler, audit)

    def ready() -> bool:
        """Ready once the caches are filled and, with an audit store, while events flow."""
        return reconciler.ready and (pipeline is None or pipeline[0].healthy)

    health = HealthServer(settings.health_address, settings.health_port, ready=ready)
    if settings.health_port:
        await health.start()
    operator = asyncio.create_task(
        kopf_operator(build_registry(reconciler, api.configuration), settings.namespaces),
        name="kopf",
    )
    workers = asyncio.create_task(reconciler.run(), name="reconciler")
    stream = asyncio.create_task(
        keep_ensuring_stream(
            settings.runner.nats_url, settings.stream, _operator_nats_credentials(settings)
        ),
        name="stream",
    )
    background = [workers, stream]
    if pipeline is not None:
        consumer, mirror = pipeline
        background += [
            asyncio.create_task(consumer.run(), name="consumer"),
            asyncio.create_task(mirror.run(), name="mirror"),
        ]
    try:
        await _initial_sync(kube, settings, reconciler)
        watched = {operator, *background} - {stream}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (operator, *background):
            task.cancel()
        await asyncio.gather(operator, *background, return_exceptions=True)
        await health.stop()
        if memory is not None:
            await memory.close()
        await api.close()
        if audit is not None:
            audit.close()
