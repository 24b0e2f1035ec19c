"""The load test's open-loop arrival process (loadtests/arrivals.py) and the gateway-vs-direct
comparison (loadtests/time_split.compare): pure, with a seeded RNG and made-up stats."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from loadtests import arrivals
from loadtests.budget_check import Stats, parse_budgets
from loadtests.time_split import compare, comparison_lines

N = 20_000


def take(rate: float, share: float, seed: int = 23, n: int = N) -> list[arrivals.Arrival]:
    return list(itertools.islice(arrivals.schedule(rate, share, random.Random(seed)), n))


def test_the_schedule_keeps_its_mean_rate() -> None:
    got = take(60.0, 1 / 3)
    # the n-th arrival of a Poisson process at rate r comes at n / r, give or take sqrt(n) / r
    expected, sd = N / 60.0, math.sqrt(N) / 60.0
    assert abs(got[-1].at_s - expected) < 4 * sd, (got[-1].at_s, expected)
    assert all(b.at_s > a.at_s for a, b in itertools.pairwise(got))


def test_the_gaps_are_exponential_not_even() -> None:
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(take(40.0, 0.0))]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(1 / 40, rel=0.03)
    # exponential: standard deviation equal to the mean (paced arrivals would have about zero)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert sd == pytest.approx(mean, rel=0.05)
    # memoryless: P(gap > mean) = 1/e, P(gap > 3 x mean) = e^-3
    assert sum(g > mean for g in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.015)
    assert sum(g > 3 * mean for g in gaps) / len(gaps) == pytest.approx(math.exp(-3), abs=0.006)


def test_each_arrival_takes_a_path_at_random_in_the_set_share() -> None:
    got = take(60.0, 1 / 3)
    names = [a.name for a in got]
    share = names.count(arrivals.DIRECT) / len(names)
    assert share == pytest.approx(1 / 3, abs=4 * math.sqrt(1 / 3 * 2 / 3 / N))
    assert set(names) == {arrivals.DIRECT, arrivals.GATEWAY}
    # not alternating in a pattern: runs of the same path as long as chance makes them
    longest = max(len(list(run)) for _, run in itertools.groupby(names))
    assert longest >= 8


def test_a_seed_gives_the_same_schedule_and_no_share_no_direct_calls() -> None:
    assert take(40.0, 0.5, seed=7, n=50) == take(40.0, 0.5, seed=7, n=50)
    assert take(40.0, 0.5, seed=7, n=50) != take(40.0, 0.5, seed=8, n=50)
    assert {a.name for a in take(40.0, 0.0, n=2000)} == {arrivals.GATEWAY}


def test_the_gateway_keeps_its_rate_whatever_the_direct_share() -> None:
    assert arrivals.total_rate(40.0, 0.0) == 40.0
    assert arrivals.total_rate(40.0, 1 / 3) == pytest.approx(60.0)
    assert arrivals.total_rate(40.0, 0.5) == pytest.approx(80.0)
    for bad in ((0.0, 0.2), (40.0, 1.0), (40.0, -0.1)):
        with pytest.raises(ValueError):
            arrivals.total_rate(*bad)
    with pytest.raises(ValueError):
        next(arrivals.schedule(40.0, 1.0, random.Random(1)))


def test_the_steady_budget_file_runs_poisson_arrivals_and_others_stay_paced() -> None:
    text = '[load]\narrivals = "poisson"\ndirect_share = 0.25\n[[budget]]\nrequests = "c"\n'
    load = parse_budgets(text).load
    assert (load.arrivals, load.direct_share) == ("poisson", 0.25)
    assert parse_budgets('[[budget]]\nrequests = "c"\n').load.arrivals == "paced"


def st(p50: float, p99: float) -> Stats:
    return Stats(1000, 0, 0.0, 40.0, p50, p50 * 2, p99, p99 * 2, p50)


def test_the_comparison_allows_one_ms_on_the_p50_and_a_fifth_on_the_p99() -> None:
    ok = compare(st(p50=2.9, p99=12.0), st(p50=2.0, p99=10.0))
    assert ok["passed"] is True
    assert [c["limit"] for c in ok["checks"]] == [3.0, 12.0]
    slow_p50 = compare(st(p50=3.1, p99=12.0), st(p50=2.0, p99=10.0))
    assert slow_p50["passed"] is False
    assert [c["passed"] for c in slow_p50["checks"]] == [False, True]
    slow_p99 = compare(st(p50=2.0, p99=12.1), st(p50=2.0, p99=10.0))
    assert [c["passed"] for c in slow_p99["checks"]] == [True, False]
    assert "FAILED p99_ms: gateway 12.1 ms > 12 ms" in "\n".join(comparison_lines(slow_p99))


def test_arrivals_over_the_cap_void_the_comparison_and_no_direct_calls_compare_nothing() -> None:
    capped = compare(st(p50=2.0, p99=10.0), st(p50=2.0, p99=10.0), over_cap=3)
    assert capped["passed"] is False
    assert "3 arrivals not sent" in "\n".join(comparison_lines(capped))
    nothing = compare(st(p50=2.0, p99=10.0), None)
    assert nothing["passed"] is None and nothing["checks"] == []
    assert comparison_lines(nothing) == ["gateway vs direct: not compared (no direct calls)"]
