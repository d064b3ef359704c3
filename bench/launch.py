"""Launch benchmark: AgentTasks → runner Jobs, against Jobs created directly; writes per task.

    .venv/bin/python bench/launch.py [--tasks 200x3 1000] [--concurrency 16]

Starts the local stack (with the apiserver's audit log) and, for each N:

- raw: N Secrets and N Jobs (the objects the operator makes for a task) created directly by a
  plain async client with `--concurrency` requests in flight: the apiserver's limit here;
- launch: N AgentTasks created the same way, with `opspawn operator` running (its own
  process, under its RBAC identity, a zero-latency runner: `true`): the time until every Job
  exists (tasks/s launched, as a ratio of the raw rate; targets >= 35 tasks/s and >= 50%) and
  until every task is Succeeded (which kube-controller-manager paces: its Job controller makes
  about 6 requests per Job under a client limit of 20 requests/s, the upstream default);
- writes: the operator's apiserver write requests per task lifecycle, counted from the audit
  log (target <= 8).

Prints one JSON line per figure and writes them all to bench/results/launch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shlex
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from figures import emit, median_of_runs, write_results
from kubernetes_asyncio import client, watch

from opspawn.dev.operator_process import OPERATOR_USER, operator_kubeconfig, start_operator
from opspawn.dev.stack import DevStack
from opspawn.operator.kube import load_api_client
from opspawn.operator.runner_job import RunnerSettings, build_runner_job, build_task_secret

RATE_TARGET = 35.0
RATIO_TARGET = 0.5
WRITES_TARGET = 8


async def bounded(jobs: list[Callable[[], Awaitable[Any]]], concurrency: int) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with semaphore:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


def task_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name},
        "spec": {
            "goal": "benchmark",
            "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m/v1"},
        },
    }


async def raw_rate(api: client.ApiClient, namespace: str, count: int, concurrency: int) -> float:
    """Secrets and Jobs as the operator would make them, created directly."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    settings = RunnerSettings(image="bench", nats_url="nats://127.0.0.1:1", command=("true",))
    bodies = []
    for index in range(count):
        fake = {
            "metadata": {
                "name": f"raw-{index:05d}",
                "namespace": namespace,
                "uid": f"{index:036d}",
            },
            "spec": task_body("x")["spec"],
        }
        secret, job = build_task_secret(fake, "k" * 32), build_runner_job(fake, 1, settings)
        for obj in (secret, job):
            obj["metadata"].pop("ownerReferences")
        bodies.append((secret, job))

    def create(secret: dict[str, Any], job: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await core.create_namespaced_secret(namespace, secret, _preload_content=False)
            await batch.create_namespaced_job(namespace, job, _preload_content=False)

        return run

    started = time.perf_counter()
    await bounded([create(s, j) for s, j in bodies], concurrency)
    return count / (time.perf_counter() - started)


async def watch_until(
    list_call: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    done: Callable[[dict[str, Any]], bool],
    want: int,
    *,
    limit_s: float,
    label_selector: str = "",
) -> float:
    """When `want` objects satisfy `done`, followed by one LIST then a WATCH: polling with
    repeated LISTs of a thousand objects would take apiserver time from what is measured."""
    listing = await list_call(*args, label_selector=label_selector, _preload_content=False)
    body = json.loads(await listing.read())
    satisfied = {item["metadata"]["uid"] for item in body["items"] if done(item)}
    version = body["metadata"]["resourceVersion"]
    deadline = time.perf_counter() + limit_s
    stream = watch.Watch()
    while len(satisfied) < want:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"{len(satisfied)} of {want} after {limit_s:.0f}s")
        async for event in stream.stream(
            list_call,
            *args,
            label_selector=label_selector,
            resource_version=version,
            timeout_seconds=max(1, int(remaining)),
            allow_watch_bookmarks=True,
        ):
            item = event["raw_object"]
            version = item["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK" and done(item):
                satisfied.add(item["metadata"]["uid"])
            if len(satisfied) >= want:
                stream.stop()
    return time.perf_counter()


def jobs_until(api: client.ApiClient, namespace: str, want: int, finished: bool) -> Any:
    """When `want` runner Jobs exist in `namespace` (or, with `finished`, have completed)."""

    def done(job: dict[str, Any]) -> bool:
        return not finished or bool((job.get("status") or {}).get("completionTime"))

    return watch_until(
        client.BatchV1Api(api).list_namespaced_job,
        (namespace,),
        done,
        want,
        limit_s=1200,
        label_selector="app.kubernetes.io/managed-by=opspawn",
    )


def tasks_succeeded(api: client.ApiClient, namespace: str, want: int) -> Any:
    def done(task: dict[str, Any]) -> bool:
        return (task.get("status") or {}).get("phase") == "Succeeded"

    custom = client.CustomObjectsApi(api)
    return watch_until(
        custom.list_namespaced_custom_object,
        ("opspawn.io", "v1alpha1", namespace, "agenttasks"),
        done,
        want,
        limit_s=1200,
    )


def operator_writes(audit_log: Path, namespace: str) -> int:
    writes = 0
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        if (
            entry.get("user", {}).get("username") == OPERATOR_USER
            and (entry.get("objectRef") or {}).get("namespace") == namespace
            and entry.get("stage") == "ResponseComplete"
        ):
            writes += 1
    return writes


async def measure(
    stack: DevStack, count: int, concurrency: int, workers: int | None, run: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run with `count` tasks: (the launch figure, the writes figure)."""
    api = await load_api_client(str(stack.kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    raw_namespace, namespace = f"bench-raw-{count}-{run}", f"bench-launch-{count}-{run}"
    for name in (raw_namespace, namespace):
        await core.create_namespace({"metadata": {"name": name}})
    raw = await raw_rate(api, raw_namespace, count, concurrency)
    # Their Pods run on the stack's kubelet: let them finish before the operator's turn.
    await jobs_until(api, raw_namespace, count, finished=True)

    if stack.control_plane is None or stack.nats is None:
        raise RuntimeError("the benchmark needs the stack's control plane and NATS")
    operator = start_operator(
        kubeconfig=operator_kubeconfig(stack.control_plane),
        nats_url=stack.nats.url,
        log_path=stack.workdir / f"operator-{count}-{run}.log",
        args=[
            *stack.nats.operator_auth_args(),
            "--namespace",
            namespace,
            "--runner-command",
            shlex.join(["true"]),
            *(["--workers", str(workers)] if workers else []),
            "--log-level",
            "WARNING",
        ],
    )
    try:
        started = time.perf_counter()
        await bounded(
            [
                functools.partial(
                    custom.create_namespaced_custom_object,
                    "opspawn.io",
                    "v1alpha1",
                    namespace,
                    "agenttasks",
                    task_body(f"task-{i:05d}"),
                    _preload_content=False,
                )
                for i in range(count)
            ],
            concurrency,
        )
        created = time.perf_counter()
        launched = await jobs_until(api, namespace, count, finished=False)
        finished = await tasks_succeeded(api, namespace, count)
    finally:
        operator.stop()
    rate = count / (launched - started)
    launch = {
        "figure": "launch",
        "tasks": count,
        "concurrency": concurrency,
        "create_s": round(created - started, 2),
        "all_jobs_s": round(launched - started, 2),
        "all_succeeded_s": round(finished - started, 2),
        "tasks_launched_per_s": round(rate, 1),
        "raw_jobs_per_s": round(raw, 1),
        "ratio_to_raw": round(rate / raw, 3),
        "target_tasks_per_s": RATE_TARGET,
        "target_ratio": RATIO_TARGET,
    }
    writes = {
        "figure": "writes",
        "tasks": count,
        "operator_writes_per_task": round(
            operator_writes(stack.control_plane.audit_log_path, namespace) / count, 2
        ),
        "target": WRITES_TARGET,
    }
    await api.close()
    return launch, writes


def launch_met(figure: dict[str, Any]) -> bool:
    return bool(
        figure["tasks_launched_per_s"] >= RATE_TARGET and figure["ratio_to_raw"] >= RATIO_TARGET
    )


def sizes(text: str) -> tuple[int, int]:
    """`N` or `NxR`: N tasks, R runs (default 1)."""
    count, _, runs = text.partition("x")
    return int(count), int(runs or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks",
        type=sizes,
        nargs="+",
        default=[(200, 3), (1000, 1)],
        help="task counts, each N or NxR for R runs (medians); default: 200x3 1000",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=None, help="the operator's --workers (default: its own)"
    )
    args = parser.parse_args()
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opspawn-bench-") as workdir:
        stack = DevStack(Path(workdir), with_postgres=False, audit_log=True)
        stack.start()
        try:
            for count, runs in args.tasks:
                measured = [
                    asyncio.run(measure(stack, count, args.concurrency, args.workers, run))
                    for run in range(runs)
                ]
                emit(figures, median_of_runs([m[0] for m in measured], launch_met))
                emit(
                    figures,
                    median_of_runs(
                        [m[1] for m in measured],
                        lambda f: bool(f["operator_writes_per_task"] <= WRITES_TARGET),
                    ),
                )
        finally:
            stack.stop()
    how = ", ".join(f"{count} tasks: {runs} run(s)" for count, runs in args.tasks)
    write_results(
        "launch",
        figures,
        f"{how}, medians; each run in fresh namespaces of one stack; stack, operator and client"
        " share the 2 cores; all_succeeded_s is set by kube-controller-manager's client rate limit"
        " (20 requests/s, the upstream default the stack keeps: about 6 requests per Job, so"
        " 3.3 Jobs/s), not by the operator",
    )


if __name__ == "__main__":
    main()
