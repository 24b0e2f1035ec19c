"""A/B experiments, pure: arm assignment agrees with the gateway's routing, outcome tallies
refuse bad input by field, and the results' intervals and verdicts."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec
import pytest

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.routing import choose
from registry.errors import InvalidInput, NotFound
from registry.experiments import stats as experiments
from registry.experiments.stats import (
    Experiment,
    ExperimentSpec,
    Metric,
    Outcome,
    Tally,
    results,
    tally,
)

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def experiment(
    arms: list[tuple[int, float]], metric: str = "conversion", **kw: object
) -> Experiment:
    spec = msgspec.convert(
        {
            "arms": [{"version": v, "weight": w} for v, w in arms],
            "sticky": {"header": "x-user"},
            "metric": metric,
            **kw,
        },
        ExperimentSpec,
    )
    return experiments.start(
        spec, id="ex-1", model="iris", production=1, actor="a", now=T0, known={1, 2, 3}
    )


@pytest.mark.parametrize(
    "arms", [[(1, 50), (2, 50)], [(1, 20), (2, 30), (3, 50)], [(2, 40), (3, 60)]]
)
def test_the_registry_assigns_keys_as_the_gateway_routes_them(
    arms: list[tuple[int, float]],
) -> None:
    ex = experiment(arms)
    production = 1
    policy = experiments.policy(ex, TrafficPolicy(), production)
    versions = {v: VersionRoute(v, f"http://127.0.0.1:{9000 + v}", "bentoml") for v in (1, 2, 3)}
    route = ModelRoute("iris", production, versions, {}, policy)
    counts: dict[int, int] = {}
    for i in range(20_000):
        key = f"user-{i}"
        served = choose(route, key=key).version
        assert experiments.assign(ex, production, key) == served
        counts[served] = counts.get(served, 0) + 1
    for version, weight in arms:  # and the split is the one asked for, within 1.5 pp
        assert abs(counts.get(version, 0) / 20_000 - weight / 100) < 0.015


def test_bad_specs_and_outcomes_name_the_field() -> None:
    with pytest.raises(InvalidInput) as weights:
        experiment([(1, 50), (2, 40)])
    assert weights.value.field == "arms"
    with pytest.raises(NotFound) as unknown:  # a named version that does not exist: 404
        experiment([(1, 50), (9, 50)])
    assert unknown.value.field == "arms[1]"
    ex = experiment([(1, 50), (2, 50)])
    with pytest.raises(InvalidInput) as not_binary:
        tally(ex, 1, [Outcome(value=1.0, key="a"), Outcome(value=0.5, key="b")])
    assert not_binary.value.field == "outcomes[1].value"
    with pytest.raises(InvalidInput) as neither:
        tally(ex, 1, [Outcome(value=1.0)])
    assert neither.value.field == "outcomes[0]"
    with pytest.raises(InvalidInput) as not_arm:
        tally(ex, 1, [Outcome(value=1.0, version=3)])
    assert not_arm.value.field == "outcomes[0].version"


def test_tallies_sum_by_arm() -> None:
    ex = experiment([(1, 50), (2, 50)])
    keys = [f"k{i}" for i in range(100)]
    sums = tally(ex, 1, [Outcome(value=1.0, key=k) for k in keys] + [Outcome(value=0.0, version=2)])
    assert sum(t.n for t in sums.values()) == 101
    on_two = sum(1 for k in keys if experiments.assign(ex, 1, k) == 2)
    assert sums[2].n == on_two + 1 and sums[2].total == on_two


def conversions(version: int, n: int, rate: float, seed: int) -> Tally:
    rng = random.Random(seed)
    hits = sum(rng.random() < rate for _ in range(n))
    return Tally(version, n, float(hits), float(hits))


def test_a_better_arm_wins_with_intervals() -> None:
    ex = experiment([(1, 50), (2, 50)], min_sample_per_arm=500)
    found = results(ex, {1: conversions(1, 4000, 0.10, 1), 2: conversions(2, 4000, 0.14, 2)})
    assert found.verdict == "winner" and found.winner == 2
    arm = next(a for a in found.arms if a.version == 2)
    assert arm.ci_low is not None and arm.ci_high is not None
    assert arm.ci_low < arm.mean < arm.ci_high  # type: ignore[operator]
    assert arm.diff is not None and arm.diff_ci_low is not None and arm.diff_ci_low > 0
    assert arm.p_value is not None and arm.p_value < found.alpha_per_comparison


def test_equal_arms_show_no_difference_and_small_ones_need_data() -> None:
    ex = experiment([(1, 50), (2, 50)], min_sample_per_arm=500)
    same = {1: conversions(1, 4000, 0.1, 3), 2: conversions(2, 4000, 0.1, 4)}
    assert results(ex, same).verdict == "no_difference"
    small = {1: Tally(1, 50, 5.0, 5.0), 2: Tally(2, 50, 30.0, 30.0)}
    needs = results(ex, small)
    assert needs.verdict == "needs_data" and needs.winner is None


def test_rewards_use_welch_and_three_arms_share_alpha() -> None:
    ex = experiment([(1, 40), (2, 30), (3, 30)], metric="reward", min_sample_per_arm=30)
    rng = random.Random(5)

    def rewards(version: int, mean: float) -> Tally:
        xs = [rng.gauss(mean, 1.0) for _ in range(400)]
        return Tally(version, len(xs), sum(xs), sum(x * x for x in xs))

    found = results(ex, {1: rewards(1, 1.0), 2: rewards(2, 1.0), 3: rewards(3, 1.5)})
    assert found.metric == Metric.REWARD and found.alpha_per_comparison == pytest.approx(0.025)
    assert found.verdict == "winner" and found.winner == 3
