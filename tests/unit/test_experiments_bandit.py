"""Bandit mode: Thompson weights within their bounds, and through many updates no enrolled key
ever changes arm, the gateway serves every key the version the registry says, and only
enrolled keys count. Pure; seeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from msgspec.structs import replace

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import BUCKETS, TrafficPolicy
from gateway.routing import choose
from registry.errors import InvalidInput
from registry.experiments import bandit
from registry.experiments.stats import (
    Experiment,
    ExperimentSpec,
    Metric,
    Outcome,
    Tally,
    arm_of,
    assign,
    policy,
    results,
    start,
    tally,
)

T0 = datetime(2026, 11, 26, tzinfo=UTC)
KEYS = [f"user-{i}" for i in range(5000)]


def experiment(arms: list[tuple[int, float]], production: int | None = 1) -> Experiment:
    body = {
        "arms": [{"version": v, "weight": w} for v, w in arms],
        "sticky": {"header": "x-user"},
        "mode": "bandit",
    }
    spec = msgspec.convert(body, ExperimentSpec)
    return start(
        spec, id="ex-b", model="iris", production=production, actor="a", now=T0, known={1, 2, 3}
    )


def served(ex: Experiment, production: int | None) -> dict[str, int]:
    """Each key's version as the gateway routes it under the experiment's policy."""
    p = policy(ex, TrafficPolicy(), production)
    versions = {v: VersionRoute(v, f"http://127.0.0.1:{9000 + v}", "bentoml") for v in (1, 2, 3)}
    route = ModelRoute("iris", production, versions, {}, p)
    return {k: choose(route, key=k).version for k in KEYS}


@pytest.mark.parametrize(
    ("current", "target"),
    [([50, 50], [0, 100]), ([50, 50], [100, 0]), ([20, 30, 50], [90, 5, 5]), ([6, 94], [0, 100])],
)
def test_weights_move_a_bounded_step_toward_the_target(
    current: list[float], target: list[float]
) -> None:
    found = bandit.bounded(current, target)
    assert sum(found) == pytest.approx(100)
    for now, new, goal in zip(current, found, target, strict=True):
        assert abs(new - now) <= bandit.MAX_STEP + 1e-9
        assert new >= min(bandit.FLOOR, now) - 1e-9
        assert (new - now) * (goal - now) >= -1e-9  # never away from the target


def test_p_best_follows_the_evidence() -> None:
    rng = np.random.default_rng(1)
    even = bandit.p_best(Metric.CONVERSION, [Tally(1), Tally(2)], rng)
    assert even == pytest.approx([0.5, 0.5], abs=0.05)
    clear = bandit.p_best(
        Metric.CONVERSION, [Tally(1, 2000, 200.0, 200.0), Tally(2, 2000, 260.0, 260.0)], rng
    )
    assert clear[1] > 0.99
    rewards = [Tally(1, 500, 500.0, 1000.0), Tally(2, 500, 400.0, 820.0)]
    assert bandit.p_best(Metric.REWARD, rewards, rng)[0] > 0.99


@pytest.mark.parametrize(
    ("arms", "production"),
    [([(1, 50), (2, 50)], 1), ([(2, 30), (1, 40), (3, 30)], 1), ([(2, 40), (3, 60)], None)],
)
def test_enrolled_keys_never_change_arm_and_the_gateway_agrees(
    arms: list[tuple[int, float]], production: int | None
) -> None:
    ex = experiment(arms, production)
    assert ex.allocation is not None
    order = [s.version for s in ex.allocation.arms]
    assert order[-1] == production or production is None  # Production's arm is the rest
    rates = {1: 0.10, 2: 0.13, 3: 0.08}
    rng = np.random.default_rng(2)
    tallies = {v: Tally(v) for v, _ in arms}
    enrolled: dict[str, int] = {}
    for update in range(10):
        routed = served(ex, production)
        for key in KEYS:
            assert assign(ex, production, key) == routed[key]
            arm = arm_of(ex, production, key)
            if arm is not None:  # counted: on its arm, served by it, and for good
                assert routed[key] == arm and enrolled.setdefault(key, arm) == arm
            else:
                assert key not in enrolled
        fed = [Outcome(value=float(rng.random() < rates[routed[k]]), key=k) for k in KEYS * 3]
        for v, t in tally(ex, production, fed).items():
            old = tallies[v]
            tallies[v] = Tally(v, old.n + t.n, old.total + t.total, old.total_sq + t.total_sq)
        before = ex.allocation
        ex = replace(ex, allocation=bandit.update(ex, tallies, rng, T0 + timedelta(hours=update)))
        after = ex.allocation
        assert before is not None and after is not None
        for old_span, new_span in zip(before.arms, after.arms, strict=True):
            assert new_span.start <= old_span.start and new_span.end >= old_span.end
            assert abs(new_span.served - old_span.served) <= bandit.MAX_STEP * 100 + 1
        assert sum(s.served for s in after.arms) == BUCKETS
    share = {s.version: s.served / 100 for s in ex.allocation.arms}
    assert max(share, key=lambda v: share[v]) == 2  # the best arm has the most traffic
    assert min(share.values()) >= bandit.FLOOR - 0.01
    assert len(enrolled) > 0.3 * len(KEYS)  # the counted share grew from 20 % (losers stop)
    found = results(ex, tallies)
    assert {a.version: a.weight for a in found.arms} == share
    assert found.regret is not None and found.regret > 0


def test_outcomes_count_by_enrolled_key_only() -> None:
    ex = experiment([(1, 50), (2, 50)])
    with pytest.raises(InvalidInput) as by_version:
        tally(ex, 1, [Outcome(value=1.0, key="a"), Outcome(value=1.0, version=2)])
    assert by_version.value.field == "outcomes[1].version"
    outside = [k for k in KEYS[:500] if arm_of(ex, 1, k) is None]
    inside = [k for k in KEYS[:500] if arm_of(ex, 1, k) is not None]
    assert outside and inside
    counted = tally(ex, 1, [Outcome(value=1.0, key=k) for k in outside + inside])
    assert sum(t.n for t in counted.values()) == len(inside)
    share = len(inside) / 500  # START_ENROLLED of the buckets, within noise
    assert share == pytest.approx(bandit.START_ENROLLED, abs=0.06)
