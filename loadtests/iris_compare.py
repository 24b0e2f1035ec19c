"""The iris example's v1 and v2 side by side: do they answer the same fields, how often do their
predictions agree, and does v2 serve at v1's cost?

    python -m loadtests.iris_compare [--requests 2000] [--json PATH]

Starts both bentos under real `bentoml serve` (loadtests/bento_server.py; both on the server CPU
when the machine has two and `taskset`), then measures:

- fields: the keys of each version's answer to the same request (they must be the same);
- agreement: the share of rows whose predicted class is the same, over the 150 rows of the iris
  data set and over the rows the tests and load tests send;
- latency: one row a request, the same rows to both, in the order v1 v2 v2 v1 so that neither
  always has the warmer slot; client-side p50, p90, p99 and mean of each, and v2's over v1's.

The machine is shared and noisy: the ratios are what to read, not the milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from loadtests.benchkit import BenchError, Pinning, machine, say, write_report
from loadtests.bento_server import bento, build_iris

V1_TAG: Final = "iris-classifier:v1"
V2_TAG: Final = "iris-classifier:v2"
#: The rows the tests and load tests send (tests/e2e, loadtests/locustfiles, gateway_bench).
PROBES: Final = ((5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3), (5.9, 3.0, 4.2, 1.5))
WARMUP: Final = 50  # requests to each version before measuring


def iris_rows() -> list[list[float]]:
    """The 150 rows of the iris data set that ships with scikit-learn."""
    from sklearn.datasets import load_iris

    return [[float(x) for x in row] for row in load_iris().data]


def agreement(a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
    """(rows predicted alike, rows) of two versions' predictions for the same rows."""
    if len(a) != len(b):
        raise BenchError(f"{len(a)} predictions against {len(b)}")
    return sum(x == y for x, y in zip(a, b, strict=True)), len(a)


def latency(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and mean in milliseconds (nearest rank)."""
    ordered = sorted(samples_s)

    def q(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def _classify(client: httpx.Client, rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    r = client.post("/classify", json={"input_series": rows})
    if r.status_code != 200:
        raise BenchError(f"{client.base_url}/classify answered {r.status_code}: {r.text[:200]}")
    answer: dict[str, Any] = r.json()
    return answer


def measure(v1_url: str, v2_url: str, requests: int) -> dict[str, Any]:
    """Fields, agreement and latency of two running iris servers."""
    rows = iris_rows()
    probes = [list(row) for row in PROBES]
    with (
        httpx.Client(base_url=v1_url, timeout=30) as v1,
        httpx.Client(base_url=v2_url, timeout=30) as v2,
    ):
        a, b = _classify(v1, rows), _classify(v2, rows)
        shares = {"iris": agreement(a["predictions"], b["predictions"])}
        pa, pb = _classify(v1, probes), _classify(v2, probes)
        shares["probes"] = agreement(pa["predictions"], pb["predictions"])
        times: dict[str, list[float]] = {"v1": [], "v2": []}
        cycle = itertools.cycle(rows)
        for i in range(WARMUP + requests):
            row = [next(cycle)]
            order = ((v1, "v1"), (v2, "v2")) if i % 2 == 0 else ((v2, "v2"), (v1, "v1"))
            for client, name in order:
                started = time.perf_counter()
                _classify(client, row)
                if i >= WARMUP:
                    times[name].append(time.perf_counter() - started)
    stats = {name: latency(samples) for name, samples in times.items()}
    return {
        "fields": {"v1": sorted(a), "v2": sorted(b)},
        "same_fields": sorted(a) == sorted(b),
        "agreement": {
            key: {"agreed": agreed, "rows": n, "share": agreed / n}
            for key, (agreed, n) in shares.items()
        },
        "latency": stats,
        "requests_per_version": requests,
        "ratio_p50": stats["v2"]["p50_ms"] / stats["v1"]["p50_ms"],
        "ratio_mean": stats["v2"]["mean_ms"] / stats["v1"]["mean_ms"],
    }


def render(report: dict[str, Any]) -> str:
    fields = report["fields"]
    same = "the same" if report["same_fields"] else "DIFFERENT"
    lines = [f"fields     v1 {fields['v1']}, v2 {fields['v2']}: {same}"]
    for key, what in (("iris", "the iris data"), ("probes", "the rows tests send")):
        got = report["agreement"][key]
        lines.append(f"agreement  {what}: {got['agreed']}/{got['rows']} ({got['share']:.1%})")
    for name in ("v1", "v2"):
        s = report["latency"][name]
        lines.append(
            f"latency    {name} p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms,"
            f" p99 {s['p99_ms']:.2f} ms, mean {s['mean_ms']:.2f} ms"
        )
    lines.append(
        f"v2 / v1    p50 {report['ratio_p50']:.3f}x, mean {report['ratio_mean']:.3f}x"
        f" over {report['requests_per_version']} requests each"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.iris_compare", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests each")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    taskset = shutil.which("taskset")
    pin = Pinning.choose(taskset) if taskset else Pinning("taskset", None, None)
    try:
        archives = build_iris()
        with tempfile.TemporaryDirectory(prefix="iris-compare-") as tmp:
            root = Path(tmp)
            say("starting both bentos")
            with (
                bento(pin, archives["v1"], root / "v1", V1_TAG) as v1,
                bento(pin, archives["v2"], root / "v2", V2_TAG) as v2,
            ):
                report = measure(v1.url, v2.url, args.requests)
    except BenchError as exc:
        print(f"iris_compare: {exc}", file=sys.stderr)
        return 1
    report["machine"] = machine()
    print(render(report))
    if args.json:
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
