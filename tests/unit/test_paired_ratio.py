"""The benches' throughput ratios from paired rounds (loadtests/resampled.paired_ratio)."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests import gateway_report
from loadtests.resampled import paired_line, paired_ratio


def test_a_drift_both_legs_share_cancels_in_the_rounds_ratios() -> None:
    # the machine's speed halves over the run; the leg is always 0.97 of the base
    base = [10_000.0 - 500 * r for r in range(10)]
    these = [0.97 * b for b in base]
    p = paired_ratio(these, base, at_least=0.95)
    assert p.ratios == [0.97] * 10
    assert p.median == p.low == p.high == 0.97
    assert p.share_at_least == 1.0
    # (each leg alone spreads from 5,500 to 10,000 req/s over the rounds)
    assert "MET, at or above in 100% of resamples" in paired_line("1% vs off", p)


def test_a_ratio_on_the_target_is_a_coin_toss_and_a_seed_repeats_it() -> None:
    base = [1000.0] * 9
    these = [930.0, 960.0, 940.0, 955.0, 950.0, 945.0, 965.0, 935.0, 952.0]
    p = paired_ratio(these, base, at_least=0.95, seed=3)
    assert p.median == 0.95
    assert p.low < 0.95 < p.high
    assert p.share_at_least is not None and 0.3 < p.share_at_least < 0.8
    assert paired_ratio(these, base, at_least=0.95, seed=3) == p
    assert "MET" in paired_line("x", p)  # the median is the verdict; the share says how sure


def test_a_clear_miss_and_no_target() -> None:
    p = paired_ratio([80.0, 82.0, 79.0], [100.0, 100.0, 100.0], at_least=0.95)
    assert p.median == 0.8 and p.high < 0.95 and p.share_at_least == 0.0
    assert "MISSED, at or above in 0% of resamples" in paired_line("x", p)
    plain = paired_ratio([80.0], [100.0])
    assert plain.at_least is None and plain.share_at_least is None
    assert paired_line("x", plain).endswith("0.800 to 0.800)")


def test_rounds_must_pair() -> None:
    with pytest.raises(ValueError, match="same rounds"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same rounds"):
        paired_ratio([], [])


def test_the_gateway_bench_pairs_the_canary_with_nginx_round_by_round() -> None:
    def leg(rounds: list[float]) -> dict[str, Any]:
        return {
            "c16": {"rps": sorted(rounds)[1], "p50_ms": 1.0, "p99_ms": 2.0, "rounds_rps": rounds}
        }

    runs = {
        "nginx": leg([20_000.0, 10_000.0, 15_000.0]),
        "gateway_canary": leg([8_000, 4_100, 6_000]),
    }
    paired = gateway_report.ratios(runs, [16])["canary_over_nginx_paired_c16"]
    assert paired["ratios"] == [0.4, 0.41, 0.4] and paired["median"] == 0.4
    assert paired["at_least"] == 0.6 and paired["share_at_least"] == 0.0
    # a leg that did not run (or failed) has no rounds: nothing to pair
    assert (
        gateway_report.ratios({"nginx": runs["nginx"]}, [16])["canary_over_nginx_paired_c16"]
        is None
    )
