"""Simulated rollouts through the real engine and judge: false fails and power.

    python -m loadtests.judge_sim                 # 1,000 rollouts per scenario (a few minutes)
    python -m loadtests.judge_sim --rollouts 100  # quicker
    python -m loadtests.judge_sim --out loadtests/results/judge-sim.json

Each simulated rollout runs `registry.rollouts.engine.step` (and so
`registry.rollouts.judge.judge`) exactly as
the controller does: a look every 30 s of simulated time, the arms' traffic since the current
step began, a new step (fresh data) after each Pass. Both arms get 50 requests a second, as
the issue states; the plan is the default (1, 5, 25, 50, 100 %) with 7,500 requests per arm
before a step is judged, so the judged steps span the 10 minutes. A rollout is "caught" when
it ends RolledBack within 10 simulated minutes; a good candidate caught is a false fail.

The baseline: 1 % errors, latencies lognormal with a 20 ms median and sigma 0.5 (p99 64 ms).
Scenarios: A/A (the candidate is the baseline); +0.5 percentage points of errors; +20 % p99
latency (every latency x1.2); and, for information, +20 % p99 from the tail alone (only the
slowest 5 % x1.2) and a 0.1 % error baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from registry.rollouts import engine as rollouts
from registry.rollouts.judge import ArmStats
from registry.rollouts.state import Phase, RolloutSpec, Snapshot

RATE: Final = 50  # requests per second per arm
LOOK_S: Final = 30
HORIZON_S: Final = 600
MEDIAN_MS: Final = 20.0
SIGMA: Final = 0.5
SPEC: Final = RolloutSpec(
    candidate=2, interval_s=LOOK_S, min_sample_per_arm=7500, max_inconclusive=100
)
DEFAULT_OUT: Final = Path(__file__).parent / "results" / "judge-sim.json"
T0: Final = datetime(2026, 1, 1, tzinfo=UTC)

Latency = Callable[[np.random.Generator, int], np.ndarray]


def lognormal(scale: float = 1.0) -> Latency:
    return lambda rng, n: scale * MEDIAN_MS * np.exp(SIGMA * rng.standard_normal(n))


def slow_tail(rng: np.random.Generator, n: int) -> np.ndarray:
    """The slowest 5 % get 20 % slower (so does the p99); the median does not move."""
    x = lognormal()(rng, n)
    edge = MEDIAN_MS * np.exp(SIGMA * 1.645)  # the distribution's p95
    return np.where(x > edge, x * 1.2, x)


@dataclass(frozen=True)
class Arm:
    error_rate: float
    latency: Latency


@dataclass(frozen=True)
class Scenario:
    name: str
    baseline: Arm
    candidate: Arm
    bad: bool  # should the judge catch it?


SCENARIOS: Final = (
    Scenario("A/A, 1% errors", Arm(0.01, lognormal()), Arm(0.01, lognormal()), bad=False),
    Scenario("A/A, 0.1% errors", Arm(0.001, lognormal()), Arm(0.001, lognormal()), bad=False),
    Scenario("+0.5 pp errors (1% -> 1.5%)", Arm(0.01, lognormal()), Arm(0.015, lognormal()), True),
    Scenario(
        "+0.5 pp errors (0.1% -> 0.6%)", Arm(0.001, lognormal()), Arm(0.006, lognormal()), bad=True
    ),
    Scenario(
        "+20% p99 latency (all x1.2)", Arm(0.01, lognormal()), Arm(0.01, lognormal(1.2)), bad=True
    ),
    Scenario("+20% p99 from the tail alone", Arm(0.01, lognormal()), Arm(0.01, slow_tail), True),
)


class Accumulated:
    """One arm's traffic since the current step began."""

    def __init__(self) -> None:
        self.requests = self.errors = 0
        self.latencies: list[float] = []

    def add(self, rng: np.random.Generator, arm: Arm, n: int) -> None:
        errors = int(rng.binomial(n, arm.error_rate))
        self.requests += n
        self.errors += errors
        self.latencies.extend(arm.latency(rng, n - errors).tolist())

    def stats(self) -> ArmStats:
        return ArmStats(self.requests, self.errors, self.latencies)


def one_rollout(scenario: Scenario, rng: np.random.Generator) -> tuple[Phase, float]:
    """The phase the rollout ended in (or was in at the horizon), and when (s)."""
    state = rollouts.start(SPEC, id="sim", model="sim", baseline=1, actor="sim", now=T0)
    state, _ = rollouts.step(state, None, T0)
    base, cand = Accumulated(), Accumulated()
    since = state.step_started_at
    for look in range(1, HORIZON_S // LOOK_S + 1):
        now = T0 + timedelta(seconds=look * LOOK_S)
        if state.step_started_at != since:  # a new step: fresh data
            base, cand, since = Accumulated(), Accumulated(), state.step_started_at
        base.add(rng, scenario.baseline, RATE * LOOK_S)
        cand.add(rng, scenario.candidate, RATE * LOOK_S)
        state, _ = rollouts.step(state, Snapshot(since, base.stats(), cand.stats()), now)
        if not state.active:
            return state.phase, look * LOOK_S
    return state.phase, HORIZON_S


def run(scenario: Scenario, rollouts_n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    ends = [one_rollout(scenario, rng) for _ in range(rollouts_n)]
    caught = [t for phase, t in ends if phase == Phase.ROLLED_BACK]
    rate = len(caught) / rollouts_n
    return {
        "scenario": scenario.name,
        "bad": scenario.bad,
        "rollouts": rollouts_n,
        "caught": len(caught),
        "rate": rate,
        "promoted": sum(phase == Phase.SUCCEEDED for phase, _ in ends),
        "median_detection_s": float(np.median(caught)) if caught else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def targets(results: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """A/A false-fail rate <= 1 %; power >= 90 % for the two required regressions."""
    by = {r["scenario"]: r["rate"] for r in results}
    return {
        "a/a false fail <= 1%": by["A/A, 1% errors"] <= 0.01,
        "power +0.5pp errors >= 90%": by["+0.5 pp errors (1% -> 1.5%)"] >= 0.90,
        "power +20% p99 >= 90%": by["+20% p99 latency (all x1.2)"] >= 0.90,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.judge_sim", description=__doc__)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    results = []
    for i, scenario in enumerate(SCENARIOS):
        found = run(scenario, args.rollouts, args.seed + i)
        results.append(found)
        detect = found["median_detection_s"]
        print(
            f"{found['scenario']:<34} caught {found['caught']:>5}/{found['rollouts']}"
            f" ({found['rate']:6.1%}), median detection"
            f" {'-' if detect is None else f'{detect:.0f} s'}, {found['seconds']} s",
            flush=True,
        )
    verdicts = targets(results)
    for name, ok in verdicts.items():
        print(f"{name:<34} {'PASS' if ok else 'MISS'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "rate_per_arm": RATE,
        "look_s": LOOK_S,
        "horizon_s": HORIZON_S,
        "results": results,
        "targets": verdicts,
    }
    args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
