"""What every part of the registry benchmark shares: the configuration and targets, the
statistics, and the HTTP loop that times one operation."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from loadtests.benchkit import BenchError
from loadtests.light_http import LightClient, LightResponse

DEFAULT_OUT: Final = Path(__file__).parent.parent / "results" / "registry-bench.json"
STORES: Final = ("sqlite", "postgres")
HOT_MODEL: Final = "bench-hot"
PAGE_MODEL: Final = "bench-paging"
ALIAS: Final = "champion"
HOT_VERSIONS: Final = 3
PAGE_SIZE: Final = 100
REQUEST_TIMEOUT_S: Final = 10.0
PHASE_BUDGET_S: Final = 300.0  # one measured operation may take at most this long in all

#: What each measurement is judged on, and its limit.
TARGETS: Final[dict[str, dict[str, Any]]] = {
    "startup": {"stat": "median", "limit": 1.0, "unit": "s", "stores": ["sqlite"]},
    "promote": {"stat": "p99", "limit": 15.0, "unit": "ms", "stores": list(STORES)},
    "set_alias": {"stat": "p99", "limit": 15.0, "unit": "ms", "stores": list(STORES)},
    "get_by_alias": {"stat": "p99", "limit": 3.0, "unit": "ms", "stores": list(STORES)},
    "first_page": {"stat": "p99", "limit": 50.0, "unit": "ms", "stores": list(STORES)},
    "mlflow_first_page": {"stat": "p99", "limit": 10.0, "unit": "ms", "stores": list(STORES)},
    "mlflow_all_one_model": {"stat": "p99", "limit": 20.0, "unit": "ms", "stores": list(STORES)},
    "mlflow_all_models": {"stat": "p99", "limit": 20.0, "unit": "ms", "stores": list(STORES)},
}
MANY_PREFIX: Final = "bench-many-"
MLFLOW_SEARCH: Final = "/api/2.0/mlflow/model-versions/search"

#: The columns of model_versions (adapters/sql/schema.py), in the order version_rows fills them.
# fmt: off
VERSION_COLUMNS: Final = (
    "model_id", "version", "stage", "status", "description", "artifact_uri", "digest",
    "size_bytes", "format", "bento_tag", "apis", "endpoint", "run_id", "source", "metrics",
    "params", "tags", "created_by", "created_at", "updated_at", "revision",
)
# fmt: on


@dataclass(frozen=True)
class Config:
    iterations: int  # measured requests per hot operation
    warmup: int
    page_iterations: int
    seed_versions: int
    startup_runs: int
    seed_models: int  # more models, of seed_versions // seed_models versions each

    @classmethod
    def full(cls) -> Config:
        return cls(
            iterations=1000,
            warmup=50,
            page_iterations=100,
            seed_versions=100_000,
            startup_runs=5,
            seed_models=1000,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            iterations=30,
            warmup=5,
            page_iterations=10,
            seed_versions=2_000,
            startup_runs=2,
            seed_models=20,
        )


# --- statistics -----------------------------------------------------------------------------


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99 (inclusive interpolation), max and mean, in milliseconds."""
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "n": len(samples_ms),
        "p50_ms": round(cuts[49], 4),
        "p90_ms": round(cuts[89], 4),
        "p99_ms": round(cuts[98], 4),
        "max_ms": round(max(samples_ms), 4),
        "mean_ms": round(statistics.fmean(samples_ms), 4),
    }


def judge(name: str, store: str, result: dict[str, Any]) -> None:
    """Add `target` and `pass` to a result, when the target applies to this store."""
    target = TARGETS.get(name)
    if target is None or store not in target["stores"]:
        return
    key = f"{target['stat']}_{target['unit']}"
    result["target"] = {"stat": key, "limit": target["limit"]}
    result["pass"] = result[key] <= target["limit"]


# --- HTTP -----------------------------------------------------------------------------------


def checked(response: LightResponse) -> Any:
    """The JSON body of a 2xx response; anything else is a failure of the run."""
    if not response.is_success:
        raise BenchError(
            f"{response.method} {response.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )
    return response.json()


def timed_loop(
    call: Callable[[int], LightResponse],
    check: Callable[[int, Any], None],
    iterations: int,
    warmup: int,
) -> list[float]:
    """Run `call(i)` warmup + iterations times; return the measured latencies in ms.

    `i` keeps counting through the warm-up, so calls that alternate keep alternating."""
    deadline = time.monotonic() + PHASE_BUDGET_S
    samples: list[float] = []
    for i in range(warmup + iterations):
        started = time.perf_counter_ns()
        response = call(i)
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        check(i, checked(response))
        if i >= warmup:
            samples.append(elapsed_ms)
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {PHASE_BUDGET_S:.0f}s ({i + 1} requests)")
    return samples


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def create_model(client: LightClient, name: str) -> None:
    checked(client.post("/api/v1/models", json={"name": name, "description": "benchmark"}))


def create_version(client: LightClient, model: str, n: int) -> int:
    body = {
        "artifact_uri": f"s3://bench/{model}/{n}",
        "digest": "sha256:" + hashlib.sha256(f"{model}/{n}".encode()).hexdigest(),
        "size_bytes": 1024,
    }
    created = checked(client.post(f"/api/v1/models/{model}/versions", json=body))
    return int(created["version"])
