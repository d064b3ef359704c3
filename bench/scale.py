"""Scale benchmark: the operator with many AgentTasks present — memory and resync time.

    .venv/bin/python bench/scale.py [--tasks 10000] [--concurrency 32] [--restarts 3]

Starts the local stack, creates `--tasks` AgentTasks (suspended, so nothing runs and the
figures are the operator's own), then starts `opspawn operator` twice:

- first start: every task is new to it (one status write each): time until every task has
  been reconciled once;
- restart (the figure the targets are about), `--restarts` times: time from process start
  until every task has been reconciled again (nothing left to write), and the operator's
  peak resident memory by then (VmHWM: what a Pod's memory limit must allow); medians over
  the restarts. Targets: <= 60 s, <= 250 MB.

The limit beside each time is a plain LIST of all the tasks from the same machine (what any
resync has to read). "Reconciled" is read from the operator's own metric
(`opspawn_reconcile_duration_seconds_count`). One JSON line per figure; results in
bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from figures import emit, median_of_runs, write_results
from kubernetes_asyncio import client

from opspawn.dev.operator_process import OperatorProcess, operator_kubeconfig, start_operator
from opspawn.dev.stack import DevStack
from opspawn.operator.kube import load_api_client

NAMESPACE = "bench-scale"
RESYNC_TARGET_S = 60.0
RSS_TARGET_MB = 250.0


def task_body(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "opspawn.io/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": f"task-{index:05d}"},
        "spec": {
            "goal": f"benchmark task {index}",
            "model": {"provider": "openai-compatible", "name": "m", "baseURL": "http://m/v1"},
            "suspend": True,
        },
    }


async def create_tasks(count: int, concurrency: int, kubeconfig: Path) -> None:
    api = await load_api_client(str(kubeconfig))
    custom = client.CustomObjectsApi(api)
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
    semaphore = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with semaphore:
            await custom.create_namespaced_custom_object(
                "opspawn.io",
                "v1alpha1",
                NAMESPACE,
                "agenttasks",
                task_body(index),
                _preload_content=False,
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    await api.close()


async def list_seconds(kubeconfig: Path) -> float:
    api = await load_api_client(str(kubeconfig))
    started = time.perf_counter()
    response = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        "opspawn.io", "v1alpha1", NAMESPACE, "agenttasks", _preload_content=False
    )
    await response.read()
    elapsed = time.perf_counter() - started
    await api.close()
    return elapsed


def reconciles(operator: OperatorProcess) -> int:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:  # noqa: S310
        for line in response.read().decode().splitlines():
            if line.startswith("opspawn_reconcile_duration_seconds_count "):
                return int(float(line.split()[1]))
    return 0


def memory_mb(operator: OperatorProcess, field: str) -> float:
    """A memory figure of the operator's process from /proc: VmRSS (resident now) or VmHWM
    (the most it was ever resident, which is what a Pod's memory limit has to allow)."""
    status = Path(f"/proc/{operator.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def run_operator(stack: DevStack, count: int, label: str) -> tuple[float, float]:
    """(seconds from process start until `count` reconciles, peak RSS in MB by then)."""
    if stack.control_plane is None or stack.nats is None:
        raise RuntimeError("the benchmark needs the stack's control plane and NATS")
    started = time.perf_counter()
    operator = start_operator(
        kubeconfig=operator_kubeconfig(stack.control_plane),
        nats_url=stack.nats.url,
        log_path=stack.workdir / f"operator-{label}.log",
        args=[*stack.nats.operator_auth_args(), "--namespace", NAMESPACE, "--log-level", "WARNING"],
        timeout=600,
    )
    try:
        deadline = started + 900
        while reconciles(operator) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{label}: fewer than {count} reconciles after 900 s")
            time.sleep(0.2)
        return time.perf_counter() - started, memory_mb(operator, "VmHWM")
    finally:
        operator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--restarts", type=int, default=3, help="restarts measured (medians)")
    args = parser.parse_args()
    figures: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opspawn-bench-") as workdir:
        stack = DevStack(Path(workdir), with_postgres=False)
        stack.start()
        try:
            started = time.perf_counter()
            asyncio.run(create_tasks(args.tasks, args.concurrency, stack.kubeconfig))
            created = time.perf_counter() - started
            first, first_peak = run_operator(stack, args.tasks, "first")
            for restart in range(args.restarts):
                listing = asyncio.run(list_seconds(stack.kubeconfig))
                resync, peak = run_operator(stack, args.tasks, f"restart-{restart}")
                runs.append(
                    {
                        "figure": "scale",
                        "tasks": args.tasks,
                        "create_s": round(created, 1),
                        "first_start_s": round(first, 1),
                        "first_start_peak_rss_mb": round(first_peak),
                        "list_all_s": round(listing, 2),
                        "resync_s": round(resync, 1),
                        "resync_ratio_to_list": round(resync / listing, 1),
                        "peak_rss_mb": round(peak),
                        "target_resync_s": RESYNC_TARGET_S,
                        "target_rss_mb": RSS_TARGET_MB,
                    }
                )
        finally:
            stack.stop()
    emit(
        figures,
        median_of_runs(
            runs,
            lambda f: f["resync_s"] <= RESYNC_TARGET_S and f["peak_rss_mb"] <= RSS_TARGET_MB,
        ),
    )
    write_results(
        "scale",
        figures,
        f"one first start, then the medians of {args.restarts} restarts, each a fresh operator"
        " process after a plain LIST; stack, operator and client share the 2 cores",
    )


if __name__ == "__main__":
    main()
