"""Ingest benchmark: runner events → audit rows committed + status mirrored, against the limits.

    .venv/bin/python bench/ingest.py [--tasks 50] [--events-per-task 400] [--rate 1000] [--runs 3]

Starts the local stack (control plane, NATS, Postgres; no kubelet work, no operator), creates
`--tasks` AgentTasks with their per-task Secrets, and signs `tasks x events-per-task` events
the way the runner does. Then, in the same run and on the same data:

- raw_jetstream: a plain durable pull consumer fetches and acks every event (the broker's
  limit);
- raw_copy: Postgres `COPY` of the same events into a bare table (the database's limit);
- ingest: the operator's own consumer, in a process of its own as in the operator (verify
  HMAC and subject, batch commit through the audit store, ack, mirror into status) drains the
  same stream; events/s from the first row committed to the last, as a ratio of each limit
  (target: >= 30% of raw COPY);
- status_lag: events published at `--rate` events/s spread over the tasks; for each event, the
  time until a status update of its task shows its sequence (watched on the apiserver);
  p50/p99 (target: p99 <= 500 ms at 1,000 events/s).

Prints one JSON line per figure and writes them all to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import nats
import psycopg
from figures import emit, median_of_runs, write_results
from kubernetes import client, config, watch
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from opspawn.api.events import (
    STREAM_NAME,
    RunnerEvent,
    SigningKey,
    StepPayload,
    TaskRef,
    UsagePayload,
    build_event,
    sign_event,
)
from opspawn.dev.nats import NatsServer
from opspawn.dev.postgres import Postgres
from opspawn.dev.stack import DevStack
from opspawn.operator.audit import AuditStore
from opspawn.operator.consumer import ConsumerSettings, EventConsumer
from opspawn.operator.kube import KubeClient, load_api_client
from opspawn.operator.mirror import StatusMirror
from opspawn.operator.runner_job import RunnerSettings, build_task_secret
from opspawn.operator.settings import OperatorSettings
from opspawn.operator.signing_keys import SigningKeys
from opspawn.operator.store import Store
from opspawn.operator.stream import StreamSettings, ensure_stream
from opspawn.operator.views import TaskView

NAMESPACE = "bench-ingest"
COPY_TARGET = 0.30
LAG_P99_TARGET_MS = 500.0


def _servers(stack: DevStack) -> tuple[NatsServer, Postgres]:
    if stack.nats is None or stack.postgres is None:
        raise RuntimeError("the benchmark needs the stack's NATS and Postgres")
    return stack.nats, stack.postgres


# --------------------------------------------------------------------------- setup


def create_tasks(api: client.ApiClient, count: int) -> list[dict[str, Any]]:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    tasks = []
    for index in range(count):
        body = {
            "apiVersion": "opspawn.io/v1alpha1",
            "kind": "AgentTask",
            "metadata": {"name": f"ingest-{index:04d}"},
            "spec": {
                "goal": "bench",
                "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m/v1"},
            },
        }
        task = custom.create_namespaced_custom_object(
            "opspawn.io", "v1alpha1", NAMESPACE, "agenttasks", body
        )
        key = f"bench-signing-key-{index:04d}-0123456789"
        core.create_namespaced_secret(NAMESPACE, build_task_secret(task, key))
        tasks.append({**task, "key": key})
    return tasks


def sign(task: dict[str, Any], sequence: int, attempt: int = 1) -> RunnerEvent:
    meta = task["metadata"]
    ref = TaskRef(
        namespace=NAMESPACE, task_name=meta["name"], task_uid=meta["uid"], attempt=attempt
    )
    payload = (
        StepPayload(step=sequence, summary=f"step {sequence}")
        if sequence % 2
        else UsagePayload(
            input_tokens=10 * sequence, output_tokens=sequence, total_tokens=11 * sequence
        )
    )
    return sign_event(build_event(ref, sequence, payload), SigningKey(task["key"].encode()))


async def publish(nats_url: str, events: list[RunnerEvent]) -> None:
    connection = await nats.connect(nats_url)
    try:
        jetstream = connection.jetstream()
        for start in range(0, len(events), 500):
            await asyncio.gather(
                *(
                    jetstream.publish(e.subject, e.to_bytes(), headers={"Nats-Msg-Id": e.id})
                    for e in events[start : start + 500]
                )
            )
    finally:
        await connection.close()


# --------------------------------------------------------------------------- limits


async def raw_jetstream(nats_url: str, total: int) -> float:
    connection = await nats.connect(nats_url)
    try:
        jetstream = connection.jetstream()
        subscription = await jetstream.pull_subscribe(
            "opspawn.events.>",
            durable="bench-raw",
            stream=STREAM_NAME,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batch = await subscription.fetch(500, timeout=5)
            for message in batch:
                json.loads(message.data)
                await message.ack()
            seen += len(batch)
        return total / (time.perf_counter() - started)
    finally:
        await connection.close()


def raw_copy(dsn: str, events: list[RunnerEvent]) -> float:
    rows = [
        (
            e.id,
            e.task_uid,
            e.namespace,
            e.task_name,
            e.attempt,
            e.sequence,
            e.type.value,
            e.time,
            json.dumps(e.payload.model_dump(mode="json", by_alias=True)),
            e.truncated,
        )
        for e in events
    ]
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "create table bench_copy (event_id text primary key, task_uid text, namespace text,"
            " task_name text, attempt int, sequence int, type text, time timestamptz,"
            " payload jsonb, truncated bool)"
        )
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy("copy bench_copy from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return len(rows) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Pipeline:
    """The operator's consumer and mirror over the stack's NATS and Postgres, run in a process
    of its own as in the operator (the publisher and the status watch of the benchmark would
    otherwise share its interpreter lock)."""

    kubeconfig: str
    nats_url: str
    database_url: str
    tasks: list[dict[str, Any]]
    interval: float
    writes_in_flight: int

    def start(self) -> tuple[BaseProcess, Any]:
        """The running process and the event that stops it."""
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        process = context.Process(target=_run_pipeline, args=(self, stop), daemon=True)
        process.start()
        return process, stop


def _run_pipeline(pipeline: Pipeline, stop: Any) -> None:
    asyncio.run(_pipeline(pipeline, stop))


async def _pipeline(pipeline: Pipeline, stop: Any) -> None:
    api = await load_api_client(pipeline.kubeconfig)
    kube = KubeClient(api)
    store = Store()
    store.load([TaskView.from_body(t) for t in pipeline.tasks], [])
    audit = AuditStore(pipeline.database_url)
    mirror = StatusMirror(kube, store, pipeline.interval, pipeline.writes_in_flight)

    async def ready() -> None:
        return None

    consumer = EventConsumer(
        nats_url=pipeline.nats_url,
        namespaces=(NAMESPACE,),
        audit=audit,
        keys=SigningKeys(kube),
        tasks=store,
        mirror=mirror,
        ready=ready,
        settings=ConsumerSettings(durable="bench-pipeline"),
    )
    jobs = [asyncio.create_task(consumer.run()), asyncio.create_task(mirror.run())]
    try:
        await asyncio.to_thread(stop.wait)
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        audit.close()
        await api.close()


def ingest_rate(pipeline: Pipeline, audit: AuditStore, total: int) -> float:
    """Events committed per second, from the first committed to the last (the process's
    start-up is not the pipeline's rate)."""
    process, stop = pipeline.start()
    try:
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + 600
        while (stored := audit.count_events()) < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stored} of {total} events stored after 600 s")
            if first is None and stored:
                first = (time.perf_counter(), stored)
            time.sleep(0.05)
        finished = time.perf_counter()
    finally:
        stop.set()
        process.join(30)
    if first is None:
        raise RuntimeError("the backlog was committed before the first count")
    return (total - first[1]) / (finished - first[0])


def watch_status(kubeconfig: str, results: Any, stop: Any) -> None:
    """Record (receive wall-clock time, uid, lastEvent.sequence) of every status update and put
    them on `results` when `stop` is set. Runs in a process of its own: in the publisher's
    interpreter it would wait for the lock the signing holds and add that wait to the lag."""
    api = config.new_client_from_config(config_file=kubeconfig)
    custom = client.CustomObjectsApi(api)
    shown: list[tuple[float, str, int]] = []
    stream = watch.Watch()
    threading.Thread(target=lambda: (stop.wait(), stream.stop()), daemon=True).start()
    with contextlib.suppress(Exception):  # the stack may stop under the watch at the end
        for item in stream.stream(
            custom.list_namespaced_custom_object,
            "opspawn.io",
            "v1alpha1",
            NAMESPACE,
            "agenttasks",
            timeout_seconds=300,
        ):
            now = time.time()
            obj = item["object"]
            last = (obj.get("status") or {}).get("lastEvent")
            if last:
                shown.append((now, obj["metadata"]["uid"], int(last["sequence"])))
    results.put(shown)


async def status_lag(
    pipeline: Pipeline,
    *,
    nats_url: str,
    rate: int,
    seconds: int,
    first_sequence: int,
    audit: AuditStore,
    already_stored: int,
) -> list[float]:
    context = multiprocessing.get_context("spawn")
    results, stop = context.Queue(), context.Event()
    watcher = context.Process(
        target=watch_status, args=(pipeline.kubeconfig, results, stop), daemon=True
    )
    watcher.start()
    process, stop_pipeline = pipeline.start()
    await asyncio.sleep(3)  # the pipeline process imports and connects
    connection = await nats.connect(nats_url)
    published: list[tuple[str, int, float]] = []
    try:
        jetstream = connection.jetstream()
        tick = 0.05
        per_tick = max(1, int(rate * tick))
        sequence = first_sequence
        started = time.perf_counter()
        index = 0
        while time.perf_counter() - started < seconds:
            events = []
            for _ in range(per_tick):
                task = pipeline.tasks[index % len(pipeline.tasks)]
                events.append(sign(task, sequence))
                index += 1
                if index % len(pipeline.tasks) == 0:
                    sequence += 1
            sent = time.time()
            await asyncio.gather(
                *(
                    jetstream.publish(e.subject, e.to_bytes(), headers={"Nats-Msg-Id": e.id})
                    for e in events
                )
            )
            published += [(e.task_uid, e.sequence, sent) for e in events]
            next_tick = started + tick * (len(published) // per_tick)
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    finally:
        await connection.close()
    # Let the backlog drain (every event committed), then give the mirror one more round.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if await asyncio.to_thread(audit.count_events) >= already_stored + len(published):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2 * pipeline.interval + 1)
    stop_pipeline.set()
    await asyncio.to_thread(process.join, 30)
    stop.set()
    shown: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for at, uid, shown_seq in await asyncio.to_thread(results.get, True, 60):
        shown[uid].append((at, shown_seq))
    await asyncio.to_thread(watcher.join, 30)
    lags = []
    for uid, seq, sent in published:
        seen = next((at for at, shown_seq in shown[uid] if shown_seq >= seq and at >= sent), None)
        # An event whose task never showed it counts as lagging by the whole measurement.
        lags.append(((seen if seen is not None else time.time()) - sent) * 1000)
    return lags


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main_async(args: argparse.Namespace, stack: DevStack) -> list[dict[str, Any]]:
    nats_server, postgres = _servers(stack)
    figures: list[dict[str, Any]] = []
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))
    tasks = create_tasks(api, args.tasks)
    await ensure_stream(nats_server.url, StreamSettings())
    events = [sign(t, s) for s in range(1, args.events_per_task + 1) for t in tasks]
    total = len(events)
    await publish(nats_server.url, events)

    js_rate = await raw_jetstream(nats_server.url, total)
    copy_rate = raw_copy(postgres.dsn, events)
    audit = AuditStore(postgres.url)
    audit.migrate()
    pipeline = Pipeline(
        str(stack.kubeconfig),
        nats_server.url,
        postgres.url,
        tasks,
        args.mirror_interval,
        args.mirror_writes_in_flight,
    )
    rate = ingest_rate(pipeline, audit, total)
    figures.append(
        {
            "figure": "ingest",
            "events": total,
            "tasks": args.tasks,
            "events_per_s": round(rate),
            "raw_jetstream_events_per_s": round(js_rate),
            "raw_copy_events_per_s": round(copy_rate),
            "ratio_to_raw_copy": round(rate / copy_rate, 3),
            "ratio_to_raw_jetstream": round(rate / js_rate, 3),
            "target_ratio_to_raw_copy": COPY_TARGET,
            "meets_target": rate / copy_rate >= COPY_TARGET,
        },
    )
    lags = await status_lag(
        pipeline,
        nats_url=nats_server.url,
        rate=args.rate,
        seconds=args.lag_seconds,
        first_sequence=args.events_per_task + 1,
        audit=audit,
        already_stored=total,
    )
    p50, p99 = percentile(lags, 0.50), percentile(lags, 0.99)
    figures.append(
        {
            "figure": "status_lag",
            "rate_events_per_s": args.rate,
            "tasks": args.tasks,
            "published_events": len(lags),
            "achieved_rate_events_per_s": round(len(lags) / args.lag_seconds),
            "mirror_interval_s": args.mirror_interval,
            "mirror_writes_in_flight": args.mirror_writes_in_flight,
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "target_p99_ms": LAG_P99_TARGET_MS,
            "meets_target": p99 <= LAG_P99_TARGET_MS,
        },
    )
    audit.close()
    api.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--events-per-task", type=int, default=400)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--lag-seconds", type=int, default=10)
    defaults = OperatorSettings(runner=RunnerSettings(image="bench", nats_url=""))
    parser.add_argument("--mirror-interval", type=float, default=defaults.mirror_interval_seconds)
    parser.add_argument(
        "--mirror-writes-in-flight", type=int, default=defaults.mirror_writes_in_flight
    )
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh stack (medians)")
    args = parser.parse_args()
    runs: list[list[dict[str, Any]]] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="opspawn-bench-") as workdir:
            # Its publishers and raw clients connect without credentials: NATS without auth.
            stack = DevStack(Path(workdir), nats_auth=False)
            stack.start()
            try:
                runs.append(asyncio.run(main_async(args, stack)))
            finally:
                stack.stop()
    figures: list[dict[str, Any]] = []
    emit(
        figures,
        median_of_runs(
            [run[0] for run in runs], lambda f: bool(f["ratio_to_raw_copy"] >= COPY_TARGET)
        ),
    )
    emit(
        figures,
        median_of_runs([run[1] for run in runs], lambda f: bool(f["p99_ms"] <= LAG_P99_TARGET_MS)),
    )
    write_results(
        "ingest",
        figures,
        f"medians of {args.runs} runs, each on a fresh stack; the pipeline (consumer + mirror, as"
        " in the operator) and the status watch each in a process of their own; stack processes"
        " and the benchmark share the machine's 2 cores",
    )


if __name__ == "__main__":
    main()
