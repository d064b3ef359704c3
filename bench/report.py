"""Summarise bench/results/*.json as a Markdown table and a PNG chart.

    .venv/bin/python bench/report.py

Writes bench/results/README.md (one row per headline figure: the measured value, the limit
measured in the same run, their ratio, the target and whether it is met) and
bench/results/summary.png (each headline as a share of its target, 1.0 = target met).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from figures import RESULTS_DIR

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Headline:
    """Which members of a figure make its row in the table."""

    label: str
    value: str
    unit: str
    target: str
    better: Better
    limit: str | None = None
    """The physical limit measured in the same run (absolute), when the figure has one."""
    ratio: str | None = None
    """The figure's ratio to that limit."""
    ratio_target: str | None = None


def _loop_step(label: str) -> Headline:
    return Headline(
        label,
        "overhead_ms_per_step",
        "ms",
        "target_ms_per_step",
        "lower",
        limit="bare_model_ms_per_step",
        ratio="ratio_to_bare",
    )


def _cold_start(label: str) -> Headline:
    return Headline(
        label,
        "seconds",
        "s",
        "target_seconds",
        "lower",
        limit="python_pass_seconds",
        ratio="ratio_to_python_pass",
    )


HEADLINES: dict[str, list[Headline]] = {
    "launch": [
        Headline(
            "launch rate",
            "tasks_launched_per_s",
            "tasks/s",
            "target_tasks_per_s",
            "higher",
            limit="raw_jobs_per_s",
            ratio="ratio_to_raw",
            ratio_target="target_ratio",
        )
    ],
    "writes": [
        Headline(
            "apiserver writes per task", "operator_writes_per_task", "writes", "target", "lower"
        )
    ],
    "ingest": [
        Headline(
            "ingest rate",
            "events_per_s",
            "events/s",
            "target_events_per_s",
            "higher",
            limit="raw_copy_events_per_s",
            ratio="ratio_to_raw_copy",
            ratio_target="target_ratio_to_raw_copy",
        )
    ],
    "status_lag": [Headline("status lag p99", "p99_ms", "ms", "target_p99_ms", "lower")],
    "task_start": [
        Headline(
            "real node: apply to runner running, p50",
            "p50_s",
            "s",
            "target_p50_s",
            "lower",
            limit="pod_start_p50_s",
            ratio="ratio_p50_to_pod_start",
        ),
        Headline("real node: apply to runner running, p99", "p99_s", "s", "target_p99_s", "lower"),
    ],
    "pod_start": [
        Headline("real node: plain Pod start, p50", "p50_s", "s", "target_p50_s", "lower")
    ],
    "loop_step": [_loop_step("loop overhead per step")],
    "loop_step_signed": [_loop_step("loop overhead per step, events signed")],
    "cold_start_check_config": [_cold_start("runner cold start (config check)")],
    "cold_start_first_model_call": [_cold_start("runner start to first model call")],
    "scale": [
        Headline(
            "resync after restart",
            "resync_s",
            "s",
            "target_resync_s",
            "lower",
            limit="list_all_s",
            ratio="resync_ratio_to_list",
        ),
        Headline("operator peak RSS", "peak_rss_mb", "MB", "target_rss_mb", "lower"),
    ],
}


@dataclass(frozen=True)
class Row:
    benchmark: str
    label: str
    size: str
    value: float
    unit: str
    target: float | None
    better: Better
    limit: float | None
    ratio: float | None
    ratio_target: float | None
    runs: int
    spread: tuple[float, float] | None
    """The lowest and highest value over the runs, when there were several."""

    @property
    def share_of_target(self) -> float | None:
        """How far the figure is from its targets, as the smaller of value/target and
        ratio/ratio-target: 1.0 or more when every target is met, whichever direction is
        better. None when the figure has no target."""
        shares = []
        if self.target is not None and self.value > 0:
            shares.append(
                self.value / self.target if self.better == "higher" else self.target / self.value
            )
        if self.ratio is not None and self.ratio_target is not None:
            shares.append(self.ratio / self.ratio_target)
        return min(shares) if shares else None

    @property
    def met(self) -> bool | None:
        share = self.share_of_target
        return None if share is None else share >= 1


def _number(figure: dict[str, Any], key: str | None) -> float | None:
    value = figure.get(key) if key else None
    return float(value) if isinstance(value, int | float) else None


def _spread(figure: dict[str, Any], key: str) -> tuple[float, float] | None:
    values = (figure.get("each_run") or {}).get(key)
    return (float(min(values)), float(max(values))) if values else None


def _run_count(figure: dict[str, Any]) -> int:
    """How many runs the figure is the median of (the runner's figures count rounds or
    process starts)."""
    for key in ("runs", "rounds", "starts"):
        if key in figure:
            return int(figure[key])
    return 1


def _runs(row: Row) -> str:
    if row.spread is None:
        return str(row.runs)
    low, high = row.spread
    return f"{row.runs} ({_fmt(low)} to {_fmt(high)})"


def _size(figure: dict[str, Any]) -> str:
    for key, unit in (("tasks", "tasks"), ("events", "events"), ("steps", "steps")):
        if key in figure:
            return f"{figure[key]:,} {unit}"
    if "rate_events_per_s" in figure:
        return f"{figure['rate_events_per_s']:,} events/s offered"
    return ""


def rows(results_dir: Path) -> list[Row]:
    """The headline rows of every results file, in file then figure order."""
    found = []
    for path in sorted(results_dir.glob("*.json")):
        for figure in json.loads(path.read_text())["figures"]:
            for headline in HEADLINES.get(figure["figure"], []):
                value = _number(figure, headline.value)
                if value is None:
                    continue
                found.append(
                    Row(
                        benchmark=path.stem,
                        label=headline.label,
                        size=_size(figure),
                        value=value,
                        unit=headline.unit,
                        target=_number(figure, headline.target),
                        better=headline.better,
                        limit=_number(figure, headline.limit),
                        ratio=_number(figure, headline.ratio),
                        ratio_target=_number(figure, headline.ratio_target),
                        runs=_run_count(figure),
                        spread=_spread(figure, headline.value),
                    )
                )
    return found


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def markdown(table: list[Row], how: dict[str, str]) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `bench/report.py` from the JSON files beside this one (`make bench`).",
        "The limit is measured in the same run on the same machine; the ratio is the figure",
        "against it. With several runs, each number is the median over the runs (a ratio is",
        "the median of the per-run ratios) and `runs` gives the lowest and highest value.",
        "See summary.png for each figure as a share of its target.",
        "",
        "| benchmark | figure | size | measured | limit (same run) | ratio | target | met | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        sign = "≥" if row.better == "higher" else "≤"
        targets = [f"{sign} {_fmt(row.target, row.unit)}"] if row.target is not None else []
        if row.ratio_target is not None:
            targets.append(f"ratio ≥ {row.ratio_target:g}")
        target = ", ".join(targets) or "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        lines.append(
            f"| {row.benchmark} | {row.label} | {row.size} | {_fmt(row.value, row.unit)} "
            f"| {_fmt(row.limit, row.unit)} | {_fmt(row.ratio)} | {target} | {met} "
            f"| {_runs(row)} |"
        )
    lines += ["", "How the figures were taken:", ""]
    lines += [f"- **{name}**: {text}" for name, text in sorted(how.items())]
    return "\n".join(lines) + "\n"


def chart(table: list[Row], path: Path) -> None:
    """Horizontal bars: each headline as a share of its target (log scale, 1 = target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charted = [row for row in table if row.share_of_target is not None]
    labels = [f"{row.label} ({row.size})" if row.size else row.label for row in charted]
    shares = [row.share_of_target or 0.0 for row in charted]
    colours = ["#2e7d32" if share >= 1 else "#c62828" for share in shares]
    figure, axes = plt.subplots(figsize=(10, 0.5 * len(charted) + 1.5))
    positions = range(len(charted))
    axes.barh(positions, shares, color=colours)
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xlabel("share of target (≥ 1: met; lower-is-better figures inverted)")
    axes.set_title("Opspawn benchmarks")
    for position, row, share in zip(positions, charted, shares, strict=True):
        axes.annotate(
            f" {_fmt(row.value, row.unit)}",
            (share, position),
            va="center",
            fontsize=8,
        )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    table = rows(RESULTS_DIR)
    how = {
        path.stem: str(json.loads(path.read_text()).get("how", ""))
        for path in sorted(RESULTS_DIR.glob("*.json"))
    }
    (RESULTS_DIR / "README.md").write_text(markdown(table, how))
    chart(table, RESULTS_DIR / "summary.png")
    print(f"wrote {RESULTS_DIR / 'README.md'} and {RESULTS_DIR / 'summary.png'}")


if __name__ == "__main__":
    main()
