"""`opspawn operator`: kopf's watches, the reconcile workers and the health endpoint, in one
event loop, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import kopf

from opspawn.operator.handlers import build_registry
from opspawn.operator.kube import KubeClient, load_api_client
from opspawn.operator.metrics import HealthServer
from opspawn.operator.reconciler import Reconciler
from opspawn.operator.settings import OperatorSettings
from opspawn.operator.stream import keep_ensuring_stream


async def run_operator(settings: OperatorSettings, kubeconfig: str | None = None) -> None:
    api = await load_api_client(kubeconfig)
    kube = KubeClient(api)
    reconciler = Reconciler(settings, kube)
    health = HealthServer(
        settings.health_address, settings.health_port, ready=lambda: reconciler.ready
    )
    if settings.health_port:
        await health.start()
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(reconciler, api.configuration),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
        ),
        name="kopf",
    )
    workers = asyncio.create_task(reconciler.run(), name="reconciler")
    stream = asyncio.create_task(
        keep_ensuring_stream(settings.runner.nats_url, settings.stream), name="stream"
    )
    try:
        if not await kube.any_task(settings.namespaces):
            reconciler.nothing_to_index()
        done, _ = await asyncio.wait({operator, workers}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (operator, workers, stream):
            task.cancel()
        await asyncio.gather(operator, workers, stream, return_exceptions=True)
        await health.stop()
        await api.close()
