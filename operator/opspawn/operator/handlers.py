"""kopf handlers: two event handlers that keep the store current and say which task to look at.

This is the level-based shape kopf's author recommends, without `kopf.index`: kopf makes every
object of an indexed resource wait until all of them are indexed, which costs time quadratic in
the number of objects at start (minutes with ten thousand tasks). The operator instead fills its
store from one LIST of each resource before its workers start (`Reconciler.start`), and these
handlers keep it current.
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

    @kopf.on.event(GROUP, VERSION, PLURAL, id="task_event", registry=registry)
    def task_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        uid = str(body.metadata.uid)
        if event.get("type") == "DELETED":
            reconciler.task_deleted(uid)
        elif not reconciler.has_task_version(uid, str(body.metadata.get("resourceVersion", ""))):
            # kopf's initial listing repeats what the operator's own LIST stored: skipping
            # those saves a view and a reconcile per task at start.
            reconciler.task_changed(TaskView.from_body(body))

    @kopf.on.event(
        "batch", "v1", "jobs", labels=RUNNER_JOB_LABELS, id="job_event", registry=registry
    )
    def job_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        reconciler.job_changed(JobView.from_body(body), deleted=event.get("type") == "DELETED")

    return registry
