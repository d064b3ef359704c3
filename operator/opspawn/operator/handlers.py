"""kopf handlers: two indexes and two event handlers that feed the reconcile's work queue.

This is the level-based shape kopf's author recommends: the indexes are the operator's view of
the cluster (filled before any handler runs, so a restarted operator sees every Job it made
before it decides anything), and the event handlers only say which task to look at again.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio import client

from opspawn.api.agenttask import GROUP, PLURAL, VERSION
from opspawn.operator.kopf_config import MANAGED_BY_LABEL, configure
from opspawn.operator.kube import connection_info
from opspawn.operator.reconciler import Reconciler
from opspawn.operator.runner_job import MANAGED_BY
from opspawn.operator.views import JobView, TaskView

RUNNER_JOB_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}


def build_registry(
    reconciler: Reconciler, configuration: client.Configuration
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="configure", registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)

    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    @kopf.index(GROUP, VERSION, PLURAL, id="agenttasks", registry=registry)
    def agenttasks(body: kopf.Body, **_: Any) -> dict[str, TaskView]:
        view = TaskView.from_body(body)
        return {view.uid: view}

    @kopf.index(
        "batch", "v1", "jobs", labels=RUNNER_JOB_LABELS, id="runner_jobs", registry=registry
    )
    def runner_jobs(body: kopf.Body, **_: Any) -> dict[str, JobView] | None:
        view = JobView.from_body(body)
        return {view.task_uid: view} if view.task_uid else None

    @kopf.on.event(GROUP, VERSION, PLURAL, id="task_event", registry=registry)
    def task_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        reconciler.bind(kwargs["agenttasks"], kwargs["runner_jobs"])
        uid = str(body.metadata.uid)
        if event.get("type") == "DELETED":
            reconciler.task_deleted(uid)
        else:
            reconciler.task_changed(uid, str(body.metadata.get("resourceVersion", "")))

    @kopf.on.event(
        "batch", "v1", "jobs", labels=RUNNER_JOB_LABELS, id="job_event", registry=registry
    )
    def job_event(body: kopf.Body, **kwargs: Any) -> None:
        reconciler.bind(kwargs["agenttasks"], kwargs["runner_jobs"])
        task_uid = JobView.from_body(body).task_uid
        if task_uid:
            reconciler.queue.add(task_uid)

    return registry
