"""Smoke test of the gateway benchmark: a `--quick` run completes and its report is whole.

Timings are not asserted against the targets (a shared machine is too noisy for that): only that
every path was measured at every concurrency with positive numbers, and that the ratios and the
verdicts are there. Where wrk, nginx or h2load is missing the test fails with the install command
(`make test` installs them through scripts/system-deps.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# gateway_canary: a 10 % sticky canary split; gateway_10k: 10,000 models more
PATHS = ("direct", "nginx", "gateway", "gateway_canary", "gateway_10k")
CONCURRENCIES = ("c1", "c16", "c64")
OIP_LEGS = ("http_json", "http_binary", "grpc")  # /v2/models/bench/infer, and gRPC ModelInfer
TARGETS = {
    "grpc_over_http_json_rps_c16",
    "gateway_rps_c16",
    "many_models_rps_c16",
    "added_p50_c1",
    "added_p99_c1",
    "canary_over_nginx_rps_c16",
    "canary_added_p50_c1",
    "e2e_share_p50_c1",
    "e2e_share_p50_c8",
    "e2e_share_p50_c1_apart",
    "e2e_share_p50_c8_apart",
    "e2e_share_cpu",
}


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, with where it is (booleans are not numbers here)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, value


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "gateway-bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.gateway_bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # 2: it could not be set up (no wrk, nginx or h2load): a failure, never a skip
    assert done.returncode != 2, done.stderr.strip()
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded, done.stdout


def test_the_table_is_printed(run: tuple[dict[str, Any], str]) -> None:
    _, stdout = run
    assert all(path in stdout for path in PATHS)
    assert "gateway/direct req/s" in stdout and "gateway/nginx req/s" in stdout
    assert "PASS" in stdout or "MISS" in stdout


def test_every_path_is_measured_at_every_concurrency(run: tuple[dict[str, Any], str]) -> None:
    report, _ = run
    assert report["machine"]["cpus"] >= 1 and report["machine"]["wrk"].startswith("wrk")
    assert set(report["runs"]) == set(PATHS)
    for path in PATHS:
        found = report["runs"][path]
        assert "error" not in found, found.get("error")
        assert set(found) == set(CONCURRENCIES), path
        for conc, cell in found.items():
            assert set(cell) >= {"rps", "p50_ms", "p99_ms"}, (path, conc)
            assert cell["p50_ms"] <= cell["p99_ms"], (path, conc, cell)
    assert set(report["rss_mb"]) == {"gateway", "gateway_10k"}, report.get("rss_mb")
    assert all(mb > 0 for mb in report["rss_mb"].values())
    not_positive = [(where, n) for where, n in numbers(report["runs"]) if n <= 0]
    assert not not_positive, f"measured numbers must be positive: {not_positive}"


def test_ratios_and_added_latency_are_present(run: tuple[dict[str, Any], str]) -> None:
    report, _ = run
    ratios = report["ratios"]
    shares = (
        "gateway_over_direct",
        "gateway_over_nginx",
        "10k_models_over_1",
        "canary_over_nginx",
        "canary_over_gateway",
    )
    for share in shares:
        assert set(ratios[f"throughput_{share}"]) == set(CONCURRENCIES)
    assert set(ratios["added_latency_c1"]) == {"p50_ms", "p99_ms"}
    assert set(ratios["canary_added_latency_c1"]) == {"p50_ms", "p99_ms"}
    found = list(numbers(ratios))
    assert len(found) == len(shares) * len(CONCURRENCIES) + 4, ratios  # no None left
    # Throughput ratios are positive; the added latencies are differences of two noisy figures
    # (a p99 can come out lower through the gateway on a busy machine), so only present.
    throughput = [n for where, n in found if where.startswith(".throughput_")]
    assert len(throughput) == len(shares) * len(CONCURRENCIES), ratios
    assert all(n > 0 for n in throughput), ratios


def test_every_oip_leg_is_measured_at_every_concurrency(run: tuple[dict[str, Any], str]) -> None:
    report, stdout = run
    assert set(report["oip"]) == set(OIP_LEGS)
    for leg in OIP_LEGS:
        found = report["oip"][leg]
        assert "error" not in found, found.get("error")
        assert set(found) == set(CONCURRENCIES), leg
        for conc, cell in found.items():
            assert cell["requests"] > 0 and cell["rps"] > 0, (leg, conc, cell)
            assert 0 < cell["p50_ms"] <= cell["p99_ms"], (leg, conc, cell)
    ratios = report["oip_ratios"]
    for name in ("throughput_grpc_over_http_json", "throughput_http_binary_over_http_json"):
        assert set(ratios[name]) == set(CONCURRENCIES), ratios
        assert all(v is not None and v > 0 for v in ratios[name].values()), ratios
    assert set(ratios["added_p50_ms_c1"]) == set(OIP_LEGS), ratios
    assert all(v is not None for v in ratios["added_p50_ms_c1"].values()), ratios
    assert "grpc/http_json req/s" in stdout and "Open Inference Protocol" in stdout


def test_targets_are_judged_and_e2e_is_skipped_when_quick(run: tuple[dict[str, Any], str]) -> None:
    report, _ = run
    assert report["e2e"] == {"skipped": "--quick"}
    assert set(report["targets"]) == TARGETS
    for name, target in report["targets"].items():
        assert target["limit"] > 0, name
        if name.startswith("e2e_"):
            assert target["value"] is None and target["pass"] is None, name
        else:
            assert target["value"] is not None and isinstance(target["pass"], bool), name


def test_the_canary_leg_really_splits(run: tuple[dict[str, Any], str]) -> None:
    """Both versions served the routed leg, the canary about a tenth (from the gateway's own
    /metrics: 10 % of sticky buckets, keys cycling through 1,000 users)."""
    report, stdout = run
    split = report["canary_split"]
    assert set(split) == {"1", "2"}, split
    total = sum(split.values())
    assert total >= sum(c["requests"] for c in report["runs"]["gateway_canary"].values())
    assert 0.05 < split["2"] / total < 0.15, split
    assert "canary split (gateway /metrics)" in stdout and "canary/nginx req/s" in stdout
