"""The measuring side of a load run's time split (time_split.py computes it): the gateway's
metrics and windows read over HTTP, and per process CPU time and run-queue wait from /proc.

Run-queue wait (`/proc/<pid>/task/<tid>/schedstat`, second field: nanoseconds a thread was
runnable but waited for a CPU) says how much of a request's time went to waiting for the
scheduler: one more process on the path (the gateway) is one more wake-up to wait for on a busy
machine, which no code in the gateway can make faster.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import httpx
import msgspec

from adapters.process_tree import descendants
from loadtests import benchkit, resampled, time_split
from loadtests.budget_check import Sample, stats
from loadtests.yard_setup import Target

GATEWAY: Final = "classify"
DIRECT: Final = "classify direct"
OVER_CAP: Final = "(over the cap)"  # locustfiles/common.py names arrivals not sent so


class Reading(NamedTuple):
    cpu_s: dict[int, float]  # pid -> user + system CPU seconds
    wait_s: dict[int, float]  # pid -> seconds its threads waited on a run queue


def run_queue_wait_s(pids: Iterable[int]) -> dict[int, float]:
    """Seconds each process's threads (those alive now) have waited for a CPU so far."""
    found: dict[int, float] = {}
    for pid in pids:
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[1])
            found[pid] = total / 1e9
    return found


def read(pids: list[int]) -> Reading:
    return Reading(benchkit.cpu_seconds(pids), run_queue_wait_s(pids))


def bento_pids(target: Target, model: str, version: int) -> tuple[str | None, list[int]]:
    server = target.server_of(model, version)
    if server is None or server.get("endpoint") is None:
        return None, []
    pid = server.get("pid")
    return server["endpoint"], [pid, *descendants(pid)] if pid else []


def metrics_text(target: Target) -> str:
    return httpx.get(f"{target.url}/metrics", timeout=10).text


def upstream_p50(target: Target, model: str, since: datetime) -> float | None:
    """The gateway's p50 of its upstream calls since `since`, from its reported windows (the
    variant with the most requests)."""
    with target.api() as api:
        r = api.get(f"/models/{model}/windows", params={"since": since.isoformat()})
    found = r.json() if r.status_code == 200 else []
    best = max(found, key=lambda w: w["requests"], default=None)
    return round(best["p50_ms"], 3) if best and best["p50_ms"] is not None else None


def _per_request(
    values: tuple[dict[int, float], dict[int, float]], pids: list[int], requests: int
) -> float | None:
    """ms per request of these processes, if all of them lived through the run (in a canary
    the baseline's server stops when the candidate is promoted)."""
    before, after = values
    if not pids or not requests or any(p not in before or p not in after for p in pids):
        return None
    return round(1000 * sum(after[p] - before[p] for p in pids) / requests, 3)


def breakdown(
    target: Target,
    model: str,
    arrivals: str,
    run: tuple[list[Sample], float, float],
    since: datetime,
    metrics_before: str,
    procs: tuple[list[int], list[int], Reading, Reading],
) -> dict[str, Any]:
    """The time split of one run: `run` is (samples, seconds, locust's CPU seconds), `procs`
    (gateway pids, BentoML pids, reading before, reading after)."""
    samples, seconds, locust_cpu_s = run
    upstream = time_split.totals_delta(
        time_split.histogram_totals(metrics_before, model),
        time_split.histogram_totals(metrics_text(target), model),
    )
    time.sleep(1.5)  # the gateway's last window reaches the registry
    p50_up = upstream_p50(target, model, since)
    yard, bento, before, after = procs
    through = [s for s in samples if s.name == GATEWAY]
    direct_samples = [s for s in samples if s.name == DIRECT]
    every = len(through) + len(direct_samples)
    cpu, wait = (before.cpu_s, after.cpu_s), (before.wait_s, after.wait_s)
    cpu_ms = {
        "gateway (modelyard process)": _per_request(cpu, yard, len(through)),
        "BentoML (server + workers)": _per_request(cpu, bento, every),
        "locust (client)": round(1000 * locust_cpu_s / max(1, len(samples)), 3),
    }
    direct = stats(direct_samples, seconds) if direct_samples else None
    gateway = stats(through, seconds)
    out = time_split.split(gateway, upstream, p50_up, direct, cpu_ms, arrivals)
    out["run_queue_wait_ms_per_request"] = {
        "gateway (modelyard process)": _per_request(wait, yard, len(through)),
        "BentoML (server + workers)": _per_request(wait, bento, every),
    }
    over_cap = sum(s.name.endswith(OVER_CAP) for s in samples)
    out["comparison"] = time_split.compare(gateway, direct, over_cap)
    if direct_samples:  # how sure the verdict is (loadtests/resampled.py)
        found = resampled.spreads(
            [s.ms for s in through],
            [s.ms for s in direct_samples],
            time_split.P50_ALLOWANCE_MS,
            time_split.P99_FACTOR,
        )
        out["comparison"]["spread"] = [msgspec.to_builtins(s) for s in found]
    if direct is not None and direct.errors:
        out["notes"].append(f"{direct.errors} of the direct calls failed: their figure is suspect")
    if direct is None:
        out["notes"].append("no direct calls (canary, --no-direct, or BentoML not run here)")
    return out
