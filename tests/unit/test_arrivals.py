"""The load test's open-loop arrival process (loadtests/arrivals.py), the gateway-vs-direct
comparison (loadtests/time_split.compare) and its bootstrap spread (loadtests/resampled.py): pure,
with seeded RNGs and made-up stats or samples."""

from __future__ import annotations

import itertools
import math
import random

import msgspec
import pytest

from loadtests import arrivals, resampled
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


def test_the_spread_of_a_clear_verdict_holds_in_every_resample() -> None:
    rng = random.Random(5)
    direct = [rng.gauss(10.0, 1.0) for _ in range(1200)]
    gateway = [rng.gauss(10.2, 1.0) for _ in range(2400)]
    p50, p99 = resampled.spreads(gateway, direct, 1.0, 1.2)
    assert (p50.metric, p50.statistic, p99.metric, p99.statistic) == (
        "p50_ms",
        "difference",
        "p99_ms",
        "ratio",
    )
    # +0.2 ms on 10 +- 1 ms: about +0.2 at the p50, inside +1 ms; the p99 ratio about 1.02
    assert p50.low <= p50.value <= p50.high and p50.within_limit == 1.0
    assert 0.95 < p99.low <= p99.value <= p99.high < 1.1 and p99.within_limit == 1.0
    assert p99.resamples == resampled.RESAMPLES


def test_a_ratio_on_the_limit_is_a_coin_toss_and_a_seed_repeats_it() -> None:
    rng = random.Random(6)
    direct = [rng.expovariate(1.0) for _ in range(1200)]
    gateway = [1.2 * rng.expovariate(1.0) for _ in range(2400)]
    p99 = resampled.spreads(gateway, direct, 1.0, 1.2)[1]
    assert 0.2 < p99.within_limit < 0.8  # the true ratio is the limit: no sure verdict
    assert p99.low < 1.2 < p99.high
    assert resampled.spreads(gateway, direct, 1.0, 1.2)[1] == p99
    assert resampled.spreads(gateway, direct, 1.0, 1.2, seed=1)[1] != p99
    assert resampled.spreads(gateway, [], 1.0, 1.2) == []


def test_the_printed_comparison_says_how_sure_it_is() -> None:
    c = compare(st(p50=2.4, p99=7.8), st(p50=2.2, p99=7.2))
    c["spread"] = [
        msgspec.to_builtins(s)
        for s in (
            resampled.Spread("p50_ms", "difference", 0.2, 0.1, 0.3, 1.0, 2000),
            resampled.Spread("p99_ms", "ratio", 1.083, 0.96, 1.25, 0.87, 2000),
        )
    ]
    text = "\n".join(comparison_lines(c))
    assert "p50_ms difference +0.20 ms, 90 % of resamples +0.10 to +0.30" in text
    assert "p99_ms ratio 1.083, 90 % of resamples 0.960 to 1.250" in text
    assert "within the limit in 87% of 2,000" in text
