"""Always-valid results: the mixture ratio against its integral, p-values and confidence
sequences that agree, A/A experiments read after every batch that rarely ever show a winner
(where the fixed-horizon test read the same way often does), and the results' new fields with
the fixed-horizon view labelled. Pure; the simulations are small and seeded."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from registry.experiments import fixed, readout, sequential
from registry.experiments.fixed import Sums
from registry.experiments.stats import Experiment, ExperimentSpec, Tally, results, start
from tests.unit.test_purity import FORBIDDEN, imported_roots

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, tzinfo=UTC)


def experiment(metric: str = "conversion", arms: int = 2, **kw: object) -> Experiment:
    weights = [{"version": v, "weight": 100 / arms} for v in range(1, arms + 1)]
    body = {"arms": weights, "sticky": {"header": "x-user"}, "metric": metric, **kw}
    spec = msgspec.convert(body, ExperimentSpec)
    return start(spec, id="ex-1", model="iris", production=1, actor="a", now=T0, known={1, 2, 3})


def test_the_experiment_modules_are_pure() -> None:
    for path in sorted((ROOT / "registry" / "experiments").glob("*.py")):
        if path.name != "service.py":
            assert not imported_roots(path) & FORBIDDEN, path.name


@pytest.mark.parametrize(("d", "v", "tau2"), [(0.01, 1e-5, 1e-4), (-0.3, 0.02, 0.5), (0, 1, 1)])
def test_the_mixture_ratio_is_the_likelihood_ratio_integrated_over_the_prior(
    d: float, v: float, tau2: float
) -> None:
    def weighted(theta: float) -> float:
        ratio = norm.pdf(d, theta, math.sqrt(v)) / norm.pdf(d, 0, math.sqrt(v))
        return float(ratio * norm.pdf(theta, 0, math.sqrt(tau2)))

    spread = 12 * math.sqrt(tau2)
    integral, _ = quad(weighted, -spread, spread, points=[d], limit=200)
    found = float(sequential.log_mixture_ratio(d, v, tau2))
    assert found == pytest.approx(math.log(integral), rel=1e-6, abs=1e-9)


def test_the_interval_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    rng = np.random.default_rng(1)
    d, v, tau2 = rng.normal(0, 0.05, 5000), rng.uniform(1e-5, 1e-3, 5000), 2e-4
    p = sequential.p_value(d, v, tau2)
    half = sequential.half_width(v, tau2, 0.05)
    assert np.array_equal(p < 0.05, np.abs(d) > half)
    assert np.all((p > 0) & (p <= 1)) and np.all(half > 1.96 * np.sqrt(v))  # wider than fixed


def test_degenerate_inputs_give_plain_answers() -> None:
    assert sequential.p_value(0.0, 0.0, 0.0) == 1.0 and sequential.p_value(0.1, 0.0, 0.0) == 0.0
    assert sequential.p_value(0.1, 1e-4, 0.0) == 1.0  # no spread: no evidence
    assert sequential.half_width(0.0, 1.0, 0.05) == 0.0
    assert sequential.half_width(1.0, 0.0, 0.05) == math.inf


def peeked(p_arm: float, p_control: float, sims: int, looks: int, seed: int) -> tuple[Sums, Sums]:
    """Cumulative conversions of `sims` experiments read after every 100 outcomes per arm."""
    rng = np.random.default_rng(seed)
    n = np.broadcast_to(np.arange(1, looks + 1) * 100.0, (sims, looks))
    one = rng.binomial(100, p_arm, (sims, looks)).cumsum(1).astype(float)
    zero = rng.binomial(100, p_control, (sims, looks)).cumsum(1).astype(float)
    return Sums(n, one, one), Sums(n, zero, zero)


def test_a_a_experiments_read_every_100_outcomes_rarely_ever_show_a_winner() -> None:
    arm, control = peeked(0.1, 0.1, sims=400, looks=40, seed=7)
    always = readout.compare(arm, control, 0.05)[3] < 0.05
    classic = fixed.compare(experiment().spec.metric, arm, control)[3] < 0.05
    ever_always, ever_classic = always.any(1).mean(), classic.any(1).mean()
    assert ever_always <= 0.05  # about 1 % in this run: the bound is loose, never broken
    assert ever_classic >= 3 * 0.05  # read 40 times, the fixed test finds 3x its alpha or more


def test_a_real_lift_is_found_and_stays_found_mostly() -> None:
    arm, control = peeked(0.15, 0.10, sims=200, looks=40, seed=8)
    found = readout.compare(arm, control, 0.05)[3] < 0.05
    assert found.any(1).mean() >= 0.95  # a +50 % lift within 4,000 outcomes per arm


def test_results_are_always_valid_and_keep_the_fixed_view_labelled() -> None:
    ex = experiment(min_sample_per_arm=500)
    # 10 % against 11.6 % at 3,000 each: the fixed test says winner (p = 0.04), the
    # always-valid test does not yet
    tallies = {1: Tally(1, 3000, 300.0, 300.0), 2: Tally(2, 3000, 348.0, 348.0)}
    found = results(ex, tallies)
    assert found.verdict == "no_difference" and found.winner is None
    assert found.inference.startswith("always-valid") and found.mixture_sd == sequential.TAU_SD
    view = found.fixed_horizon
    assert view is not None and view.verdict == "winner" and view.winner == 2
    assert "fixed-horizon" in view.note and "read once" in view.note
    two, fixed_two = found.arms[1], view.arms[1]
    assert fixed_two.p_value is not None and fixed_two.p_value < 0.05
    assert two.p_value is not None and two.p_value > 0.05
    assert two.diff == pytest.approx(fixed_two.diff)
    assert two.diff_ci_low < 0 < fixed_two.diff_ci_low  # type: ignore[operator]
    for arm, classic in zip(found.arms, view.arms, strict=True):  # wider than fixed intervals
        assert arm.ci_low < classic.ci_low < classic.ci_high < arm.ci_high  # type: ignore[operator]
    assert [a.weight for a in found.arms] == [50.0, 50.0]
    assert found.regret == pytest.approx(3000 * 0.016)  # v1's outcomes against v2's rate


def test_a_large_lift_is_a_winner_at_any_read_and_the_payload_only_gains_fields() -> None:
    ex = experiment(min_sample_per_arm=100)
    tallies = {1: Tally(1, 200, 20.0, 20.0), 2: Tally(2, 200, 80.0, 80.0)}
    found = results(ex, tallies)
    assert (found.verdict, found.winner) == ("winner", 2)
    payload = msgspec.to_builtins(found)
    old = {"metric", "alpha_per_comparison", "verdict", "winner", "reason", "arms"}
    assert old < set(payload)
    assert {
        "version",
        "control",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "p_value",
    } < set(payload["arms"][1])


def test_conversion_intervals_stay_within_zero_and_one() -> None:
    found = results(experiment(), {1: Tally(1, 150, 0.0, 0.0), 2: Tally(2, 150, 150.0, 150.0)})
    for arm in found.arms:
        assert arm.ci_low is not None and arm.ci_high is not None
        assert 0.0 <= arm.ci_low < arm.ci_high <= 1.0


@pytest.mark.parametrize(
    ("d", "v", "mde", "tau2"), [(0.01, 1e-5, 0.01, 4e-3), (-0.3, 0.02, 0.1, 0.5)]
)
def test_the_mde_mixture_is_its_parts_likelihood_ratios_weighted(
    d: float, v: float, mde: float, tau2: float
) -> None:
    def ratio(theta: float) -> float:
        return float(norm.pdf(d, theta, math.sqrt(v)) / norm.pdf(d, 0, math.sqrt(v)))

    up, share = sequential.IMPROVEMENT_SHARE, sequential.POINT_SHARE
    point = up * ratio(mde) + (1 - up) * ratio(-mde)
    normal = math.exp(float(sequential.log_mixture_ratio(d, v, tau2)))
    expected = share * point + (1 - share) * normal
    found = float(sequential.log_mde_ratio(d, v, mde, tau2))
    assert found == pytest.approx(math.log(expected), rel=1e-6)


def test_the_mde_interval_is_where_the_ratio_stays_below_one_over_alpha() -> None:
    rng = np.random.default_rng(2)
    d, v = rng.normal(0, 0.02, 4000), rng.uniform(1e-5, 1e-3, 4000)
    mde, tau2 = rng.uniform(0.0, 0.03, 4000), rng.uniform(1e-4, 1e-2, 4000)
    low, high = sequential.mde_interval(d, v, mde, tau2, 0.05)
    p = sequential.mde_p_value(d, v, mde, tau2)
    assert np.all(low < d) and np.all(d < high)
    assert np.array_equal(p < 0.05, (low > 0) | (high < 0))  # the p-value and the interval agree
    bound = math.log(20)
    at_ends = [sequential.log_mde_ratio(d, v, mde, tau2, end) for end in (low, high)]
    for found in at_ends:
        assert np.allclose(found, bound, atol=1e-6)
    inside = sequential.log_mde_ratio(d, v, mde, tau2, (low + high) / 2)
    assert np.all(inside < bound)


def test_improvements_need_less_evidence_than_harm_and_degenerate_inputs_are_plain() -> None:
    better = sequential.mde_p_value(0.009, 1e-5, 0.01, 1e-3)
    worse = sequential.mde_p_value(-0.009, 1e-5, 0.01, 1e-3)
    assert better < 0.05 < worse
    assert sequential.mde_p_value(0.0, 0.0, 0.01, 0.0) == 1.0
    assert sequential.mde_p_value(0.1, 0.0, 0.01, 0.0) == 0.0
    low, high = sequential.mde_interval(0.1, 0.0, 0.01, 0.0, 0.05)
    assert low == high == 0.1
    low, high = sequential.mde_interval(0.1, 1e-3, 0.0, 0.0, 0.05)  # no mixture: no evidence
    assert (low, high) == (-math.inf, math.inf)


def test_a_ten_percent_lift_is_found_within_20000_per_arm_mostly() -> None:
    arm, control = peeked(0.11, 0.10, sims=300, looks=200, seed=9)
    found = readout.compare(arm, control, 0.05)[3] < 0.05
    diff = np.asarray(arm.total) - np.asarray(control.total)
    assert (found & (diff > 0)).any(1).mean() >= 0.72  # about 80 % (the full simulation: 81 %)
