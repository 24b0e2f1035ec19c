"""The load tests' report (loadtests/loadreport.py) and time split (loadtests/time_split.py):
pure parts, on made-up samples and metrics."""

from __future__ import annotations

import pytest

from loadtests import loadreport, time_split
from loadtests.budget_check import Sample, stats

METRICS = """\
# TYPE modelyard_gateway_request_duration_seconds histogram
modelyard_gateway_request_duration_seconds_sum{model="iris",version="1",variant="stable"} 0.05
modelyard_gateway_request_duration_seconds_count{model="iris",version="1",variant="stable"} 10
modelyard_gateway_request_duration_seconds_sum{model="other",version="1",variant="stable"} 9.0
modelyard_gateway_request_duration_seconds_count{model="other",version="1",variant="stable"} 9
"""


def test_series_and_timeline_per_version_and_variant() -> None:
    run = [Sample(100.0 + i / 10, "classify", "stable", 10.0, True, "1") for i in range(40)]
    run += [Sample(102.0 + i / 10, "classify", "canary", 30.0, i % 2 == 0, "2") for i in range(10)]
    summary = loadreport.summary(run, seconds=4)
    assert set(summary) == {"classify", "classify [v1 stable]", "classify [v2 canary]"}
    assert summary["classify"]["requests"] == 50 and summary["classify [v2 canary]"]["errors"] == 5
    tl = loadreport.timeline(run, t0=100.0, seconds=4)
    assert tl["bucket_s"] == 1.0
    stable = tl["series"]["classify [v1 stable]"]
    assert [r["t"] for r in stable] == [0.0, 1.0, 2.0, 3.0]
    assert all(r["requests"] == 10 and r["p50_ms"] == 10.0 for r in stable)


def test_the_gateway_histogram_gives_the_mean_upstream_call() -> None:
    before = time_split.histogram_totals(METRICS, "iris")
    assert before == {("1", "stable"): (10.0, 0.05)}
    after = {("1", "stable"): (30.0, 0.25), ("2", "canary"): (0.0, 0.0)}
    delta = time_split.totals_delta(before, after)
    assert delta == {("1", "stable"): (20.0, pytest.approx(0.2))}
    assert time_split.upstream_mean_ms(delta) == pytest.approx(10.0)


def test_the_split_subtracts_the_gateways_measurement_from_the_clients() -> None:
    e2e = stats([Sample(0, "classify", "stable", 12.0, True)] * 10, 1)
    direct = stats([Sample(0, "classify", "", 10.5, True)] * 10, 1)
    out = time_split.split(e2e, {("1", "stable"): (10.0, 0.1)}, 9.5, direct, {"locust": 1.0})
    means = [row["mean_ms"] for row in out["rows"]]
    assert means == [12.0, 10.0, 2.0, 10.5, 1.5]
    assert [row["p50_ms"] for row in out["rows"]] == [12.0, 9.5, 2.5, 10.5, 1.5]


def test_the_gateway_bench_report_gets_the_shared_fields() -> None:
    bench = {
        "runs": {
            "direct": {"c1": {"rps": 900.0, "p50_ms": 0.05, "p99_ms": 0.2, "requests": 9}},
            "gateway": {"error": "boom"},
        },
        "e2e": {"skipped": "--quick"},
        "targets": {
            "added_p50_c1": {
                "what": "added p50",
                "op": "<=",
                "limit": 0.3,
                "unit": "ms",
                "value": 0.5,
                "pass": False,
            },
            "e2e_share_cpu": {
                "what": "share",
                "op": "<",
                "limit": 0.1,
                "unit": "fraction",
                "value": None,
                "pass": None,
            },
        },
    }
    fields = loadreport.bench_fields(bench)
    assert fields["kind"] == "modelyard-gateway-bench/1" and fields["passed"] is False
    assert fields["summary"] == {
        "direct c1": {"requests": 9, "rps": 900.0, "p50_ms": 0.05, "p99_ms": 0.2}
    }
    miss, unknown = fields["budgets"]
    assert miss["budget"] == "added_p50_c1" and miss["over_by"] == pytest.approx(0.2)
    assert miss["message"].startswith("BROKEN  added_p50_c1")
    assert unknown["passed"] is None


def test_the_printed_table_gives_the_comparison_verdict_and_the_run_queue_wait() -> None:
    gateway = stats([Sample(0, "classify", "stable", 3.5, True)] * 10, 1)
    direct = stats([Sample(0, "classify direct", "", 2.0, True)] * 10, 1)
    b = time_split.split(gateway, {}, None, direct, {"locust": 1.0}, arrivals="poisson")
    b["run_queue_wait_ms_per_request"] = {"gateway (modelyard process)": 0.42}
    assert "same open-loop Poisson arrivals" in b["notes"][-1]
    report = {
        "summary": {},
        "breakdown": b,
        "comparison": time_split.compare(gateway, direct),
        "budgets": [],
    }
    text = loadreport.table(report)
    assert "waiting for a CPU (run queue), ms per request: gateway (modelyard process) 0.42" in text
    assert "gateway vs direct, same run: FAILED" in text
    assert "FAILED p50_ms: gateway 3.5 ms > 3 ms (direct p50 + 1 ms, direct 2 ms)" in text
    assert "FAILED p99_ms: gateway 3.5 ms > 2.4 ms (direct p99 x 1.2, direct 2 ms)" in text


def test_without_direct_calls_the_split_says_nothing_about_them() -> None:
    gateway = stats([Sample(0, "classify", "stable", 3.5, True)] * 10, 1)
    out = time_split.split(gateway, {("1", "stable"): (10.0, 0.02)}, None, None, {})
    assert not any("direct calls" in note for note in out["notes"]), out["notes"]
    assert out["rows"][3]["mean_ms"] is None
