"""The load tests' budget check (loadtests/budget_check.py): pure, on made-up samples."""

from __future__ import annotations

import pytest

from loadtests.budget_check import (
    Budget,
    BudgetFileError,
    Sample,
    broken,
    check,
    parse_budgets,
    percentile,
    stats,
)

STEADY = """
[load]
users = 4
rate_per_user = 2.5
duration_s = 30

[[budget]]
requests = "classify"
p50_ms = 40
p99_ms = 180
max_error_rate = 0.01
min_rps = 30

[[budget]]
requests = "classify"
variant = "canary"
p95_ms = 100
"""


def samples(ms: list[float], name: str = "classify", variant: str = "stable") -> list[Sample]:
    return [Sample(float(i), name, variant, m, True) for i, m in enumerate(ms)]


def test_the_file_gives_the_load_and_every_budget() -> None:
    spec = parse_budgets(STEADY)
    assert (spec.load.users, spec.load.rate_per_user, spec.load.duration_s) == (4, 2.5, 30)
    assert spec.load.rate == 10
    assert [b.label for b in spec.budget] == ["classify", "classify [canary]"]
    assert spec.budget[0].p95_ms is None and spec.budget[0].min_rps == 30


@pytest.mark.parametrize(
    "text",
    [
        "[[budget]]\nrequests = 'x'\np99 = 3\n",  # unknown field: a typo must not pass silently
        "[[budget]]\nrequests = 'x'\np99_ms = -1\n",
        "[[budget]]\nrequests = 'x'\nmax_error_rate = 1.5\n",
        "[load]\nusers = 1\n",  # no budget at all
        "[[budget]\n",  # not TOML
    ],
)
def test_a_wrong_file_is_refused_with_its_name(text: str) -> None:
    with pytest.raises(BudgetFileError, match=r"steady\.toml"):
        parse_budgets(text, "steady.toml")


def test_percentiles_interpolate_between_ranks() -> None:
    ordered = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(ordered, 50) == pytest.approx(50.5)
    assert percentile(ordered, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    s = stats(samples([10.0] * 98 + [500.0, 900.0]), seconds=4)
    assert (s.requests, s.errors, s.rps, s.p50_ms, s.max_ms) == (100, 0, 25.0, 10.0, 900.0)


def test_a_healthy_run_holds_every_budget() -> None:
    run = samples([5.0 + (i % 10) for i in range(1200)])  # 5..14 ms, 40 req/s over 30 s
    verdicts = check(run, parse_budgets(STEADY).budget[:1], seconds=30)
    assert [v.metric for v in verdicts] == ["p50_ms", "p99_ms", "error_rate", "rps"]
    assert broken(verdicts) == []
    assert all(v.describe().startswith("ok ") for v in verdicts)


def test_added_latency_breaks_the_latency_budgets_and_says_by_how_much() -> None:
    run = samples([205.0 + (i % 10) for i in range(1200)])  # the fault switch: +200 ms
    bad = broken(check(run, parse_budgets(STEADY).budget[:1], seconds=30))
    assert [v.metric for v in bad] == ["p50_ms", "p99_ms"]
    p50 = bad[0]
    assert p50.value == pytest.approx(209.5) and p50.over_by == pytest.approx(169.5)
    assert p50.describe() == (
        "BROKEN  classify p50_ms: 209.5 ms > 40 ms: 169.5 ms over the budget, +424%"
    )


def test_errors_and_low_throughput_break_their_budgets() -> None:
    run = samples([5.0] * 300)
    run += [Sample(300.0 + i, "classify", "stable", 5.0, False) for i in range(30)]
    bad = {v.metric: v for v in broken(check(run, parse_budgets(STEADY).budget[:1], 30))}
    assert set(bad) == {"error_rate", "rps"}
    assert bad["error_rate"].value == pytest.approx(30 / 330, abs=1e-5)
    assert bad["rps"].value == 11.0 and bad["rps"].over_by == pytest.approx(19.0)
    assert "11 req/s < 30 req/s: 19.0 req/s under the budget, -63%" in bad["rps"].describe()


def test_a_budget_reads_only_its_requests_and_variant() -> None:
    run = samples([5.0] * 100) + samples([150.0] * 10, variant="canary")
    run += samples([900.0] * 50, name="registry read", variant="")
    canary = check(run, parse_budgets(STEADY).budget[1:], seconds=10)
    assert [(v.metric, v.value, v.passed) for v in canary] == [("p95_ms", 150.0, False)]
    fine = check(run, [Budget("classify", variant="stable", p99_ms=10)], seconds=10)
    assert fine[0].passed and fine[0].value == 5.0


def test_a_budget_with_no_requests_is_broken_not_passed() -> None:
    verdicts = check(samples([5.0] * 10), [Budget("registry promote", p99_ms=100)], seconds=1)
    assert [(v.metric, v.value, v.passed) for v in verdicts] == [("requests", 0, False)]
    assert "registry promote requests" in verdicts[0].describe()
