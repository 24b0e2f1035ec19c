"""A load run's report: the JSON (numbers per series, a timeline, the rollout's events, where the
time goes, every budget's verdict), the PNG (latency percentiles over time per variant, the
rollout's weight changes marked) and the text a person reads at the end of a run.

The shape, shared with the gateway benchmark (loadtests/gateway_bench.py adds the same top-level
fields to its own report, see `bench_fields`):

    kind      "modelyard-loadtest/1" | "modelyard-gateway-bench/1"
    scenario  steady | canary | registry | mixed | gateway-bench
    machine   cpus, python, platform, load average at the start
    config    what ran
    summary   {series: {requests, errors, error_rate, rps, p50_ms, p95_ms, p99_ms, max_ms, mean_ms}}
    budgets   [{budget, metric, op, limit, value, passed, over_by, message}]
    comparison  load tests with direct calls: {checks: [{metric, gateway, direct, limit, rule,
              passed}], over_cap, passed} (time_split.compare; beside the budgets, no exit code)
    passed    true when every budget held
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from loadtests import time_split
from loadtests.budget_check import Sample, Verdict, stats

KIND: Final = "modelyard-loadtest/1"
BENCH_KIND: Final = "modelyard-gateway-bench/1"
PLOT_PERCENTILES: Final = (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":"))


def series_of(sample: Sample) -> str:
    """Request name, and the version and variant that answered: `classify [v2 canary]`."""
    if not sample.variant:
        return sample.name
    version = f"v{sample.version} " if sample.version else ""
    return f"{sample.name} [{version}{sample.variant}]"


def summary(samples: Sequence[Sample], seconds: float) -> dict[str, Any]:
    """Per series (request name and variant), and per request name over all variants."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[series_of(s)].append(s)
        if s.variant:
            groups[s.name].append(s)
    return {k: msgspec.to_builtins(stats(v, seconds)) for k, v in sorted(groups.items())}


def bucket_width(seconds: float) -> float:
    """About 30 points across the run, at least 1 s each."""
    return float(max(1, math.ceil(seconds / 30)))


def timeline(samples: Sequence[Sample], t0: float, seconds: float) -> dict[str, Any]:
    """Per series, per bucket of time from t0: requests, errors, p50/p95/p99."""
    width = bucket_width(seconds)
    buckets: dict[str, dict[int, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        buckets[series_of(s)][int((s.t - t0) // width)].append(s)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_index in sorted(buckets.items()):
        rows = []
        for i, chunk in sorted(by_index.items()):
            covered = min(width, seconds - i * width)  # the last bucket may be cut short
            st = stats(chunk, covered if covered > 0 else width)
            rows.append(
                {
                    "t": i * width,
                    "requests": st.requests,
                    "errors": st.errors,
                    "rps": st.rps,
                    "p50_ms": st.p50_ms,
                    "p95_ms": st.p95_ms,
                    "p99_ms": st.p99_ms,
                }
            )
        out[name] = rows
    return {"bucket_s": width, "series": out}


def verdicts_json(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    return [
        {**msgspec.to_builtins(v), "over_by": v.over_by, "message": v.describe()} for v in verdicts
    ]


# --- the plot -------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency percentiles per series over time (log scale), throughput and errors below, each
    rollout event as a vertical line labelled with its phase and weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    fig, (lat, rate) = plt.subplots(
        2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, rows) in enumerate(tl["series"].items()):
        colour = colours[i % len(colours)]
        xs = [r["t"] + tl["bucket_s"] / 2 for r in rows]
        for key, style in PLOT_PERCENTILES:
            ys = [r[key] for r in rows]
            lat.plot(xs, ys, style, color=colour, label=f"{name} {key[:3]}", linewidth=1.4)
        rate.plot(xs, [r["rps"] for r in rows], "-", color=colour, label=f"{name} req/s")
        errs = [(x, r["errors"] / tl["bucket_s"]) for x, r in zip(xs, rows, strict=True)]
        if any(e for _, e in errs):
            rate.plot(*zip(*errs, strict=True), "x", color=colour, label=f"{name} errors/s")
    for ev in report.get("events", []):
        for ax in (lat, rate):
            ax.axvline(ev["t"], color="grey", linewidth=0.8, linestyle="-.")
        lat.annotate(
            f"{ev['phase']} {ev['weight']:g}%",
            (ev["t"], 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="bottom",
            ha="right",
            fontsize=8,
            color="dimgrey",
        )
    lat.set_yscale("log")
    lat.set_ylabel("latency, ms (client)")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    passed = "budgets held" if report["passed"] else "BUDGET BROKEN"
    lat.set_title(
        f"{report['scenario']}: {report['config'].get('target', '')} — {passed}", fontsize=10
    )
    rate.set_ylabel("per second")
    rate.set_xlabel(f"seconds since the start (buckets of {tl['bucket_s']:g} s)")
    rate.grid(True, alpha=0.3)
    rate.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the text -------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'series':<34}{'req':>7}{'err %':>7}{'req/s':>8}"
        f"{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}  ms"
    )
    lines = [head, "-" * len(head)]
    for name, s in report["summary"].items():
        lines.append(
            f"{name:<34}{s['requests']:>7}{100 * s['error_rate']:>7.2f}{s['rps']:>8.1f}"
            f"{_f(s['p50_ms']):>8}{_f(s['p95_ms']):>8}{_f(s['p99_ms']):>8}{_f(s['max_ms']):>8}"
        )
    if report.get("events"):
        lines += ["", "rollout:"]
        lines += [
            f"  t={e['t']:6.1f} s  {e['phase']:<12} {e['weight']:g}%  {e.get('reason') or ''}"
            for e in report["events"]
        ]
    if report.get("breakdown"):
        lines += ["", *breakdown_lines(report["breakdown"])]
    if report.get("comparison"):
        lines += ["", *time_split.comparison_lines(report["comparison"])]
    lines += ["", "budgets:"]
    lines += [f"  {v['message']}" for v in report["budgets"]]
    return "\n".join(lines)


def breakdown_lines(b: dict[str, Any]) -> list[str]:
    if "skipped" in b:
        return [f"where the time goes: skipped ({b['skipped']})"]
    lines = ["where the time goes (ms per request; mean and p50, measured):"]
    for row in b["rows"]:
        lines.append(f"  {row['what']:<60}{_f(row['mean_ms'], '8.2f')}{_f(row['p50_ms'], '8.2f')}")
    cpu = b.get("cpu_ms_per_request")
    if cpu:
        parts = [f"{k} {_f(v, '.2f')}" for k, v in cpu.items()]
        lines.append("  CPU ms per request: " + ", ".join(parts))
    wait = b.get("run_queue_wait_ms_per_request")
    if wait:
        parts = [f"{k} {_f(v, '.2f')}" for k, v in wait.items()]
        lines.append("  waiting for a CPU (run queue), ms per request: " + ", ".join(parts))
    lines += [f"  {note}" for note in b.get("notes", [])]
    return lines


# --- the gateway benchmark in the same shape ------------------------------------------------


def bench_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The shared top-level fields for the gateway benchmark's report: `summary` per path and
    concurrency (and in front of BentoML), `budgets` from its targets, `passed`."""
    summary_: dict[str, Any] = {}
    for path, by_conc in (report.get("runs") or {}).items():
        for conc, cell in (by_conc or {}).items():
            if isinstance(cell, dict) and "rps" in cell:
                summary_[f"{path} {conc}"] = _bench_cell(cell)
    e2e = report.get("e2e") or {}
    for path in ("direct", "gateway", "apart"):
        for conc, cell in (e2e.get(path) or {}).items():
            if isinstance(cell, dict) and "rps" in cell:
                summary_[f"bentoml {path} {conc}"] = _bench_cell(cell)
    budgets = []
    for name, t in (report.get("targets") or {}).items():
        op = "<=" if t["op"] in ("<=", "<") else ">="
        v = Verdict(name, t["unit"], op, float(t["limit"]), t["value"], bool(t["pass"]))
        budgets.append(
            {**verdicts_json([v])[0], "what": t["what"], "op": t["op"], "passed": t["pass"]}
        )
    return {
        "kind": BENCH_KIND,
        "scenario": "gateway-bench",
        "summary": summary_,
        "budgets": budgets,
        "passed": all(b["passed"] is not False for b in budgets),
    }


def _bench_cell(cell: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": cell.get("requests"),
        "rps": cell["rps"],
        "p50_ms": cell.get("p50_ms"),
        "p99_ms": cell.get("p99_ms"),
    }
